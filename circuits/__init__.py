"""circuits: read a trained network like a circuit board.

The public API is small and imported lazily, so ``import circuits`` (and the catalog and the CLI's fast
paths) do not import torch. One argument order everywhere: ``(model, source, target)``, or by keyword.

    load(spec)                              -> LoadedModel      a model by spec (zoo:, planted:, file.py:attr, ...)
    layers(model)                           -> NeuronGraph      its neuron layers; reuse it across calls
    load_data(spec, input_shape)            -> Tensor           probe images (toyworld:256, noise:64, a folder)
    load_labelled(spec, input_shape)        -> Labelled         toy-world images with their labels and latents
    weights(model, source, target)          -> Weights          direct or expanded kernels
    attribution(model, source, target, data) -> Attribution     edge attributions on images
    extract(model, target, depth, top_k)    -> Circuit          a neuron's circuit (a networkx DiGraph)
    emit(circuit)                           -> EmittedModule    the circuit as annotated numpy code
    verify(module, model, data)             -> dict             its measured faithfulness
    compile_neuron(model, target, data)     -> Compiled         extract -> emit -> verify in one call
    compile_program(model, top_k, data)     -> Program          the whole network as a numpy package; .write(dir)
    verify_program(dir, model, data)        -> dict             its accuracy, agreement, logits and layer R²
    record(catalog, model, circuit, compiled)                   store them in a catalog
    lesion(model, neurons, data)            -> Lesion           silence neurons: the logits with and without them
    visualise(model, layer, channels)       -> Pictures         feature visualisation: images that drive each neuron
    dataset_examples(model, layer, data)    -> Examples         each neuron's top images, cropped to what it sees
    find_motifs(model, kind, layer, data)   -> list[Motif]      families, unions, opponents, ...
    universality(models, data)              -> dict             the same neurons and motifs across models
    diff(model_a, model_b, data)            -> dict             what changed from A to B, neuron by neuron
    plant(model, kind, seed)                -> (module, key)    the auditing game: a secret, planted change
    audit(model, reference=None, data)      -> dict             the auditor's ranked suspects (blind without a reference)
    score_audit(report, key, model)         -> dict             did the auditor find the plant?
    scan(models, layers, what, catalog)     -> dict             catalogue whole zoos, shard by shard (workers=N: Dask)
    Catalog(path)                                               the SQLite catalog
    Circuit.from_json(payload)              -> Circuit          a stored circuit, back

Example:

    >>> import circuits
    >>> model = circuits.load("planted:union")
    >>> circuit = circuits.extract(model, "union:0", depth=1, top_k=2)
    >>> print(circuit.tree())
    union:0  (ReLU; “union”)
    ├─ +1.000  wedges:0  (ReLU; “wedge_left”)
    └─ +1.000  wedges:1  (ReLU; “wedge_right”)
"""

__version__ = "0.1.0"

_LAZY = {
    "load": ("circuits.models", "load"),
    "layers": ("circuits.graph", "build_graph"),
    "NeuronGraph": ("circuits.graph", "NeuronGraph"),
    "load_data": ("circuits.data", "load_data"),
    "load_labelled": ("circuits.data.spec", "load_labelled"),
    "weights": ("circuits.trace", "weights"),
    "attribution": ("circuits.trace", "attribution"),
    "extract": ("circuits.extraction", "extract"),
    "Circuit": ("circuits.circuit", "Circuit"),
    "emit": ("circuits.compile", "emit"),
    "verify": ("circuits.compile", "verify"),
    "compile_circuit": ("circuits.pipeline", "compile_circuit"),
    "compile_neuron": ("circuits.pipeline", "compile_neuron"),
    "compile_program": ("circuits.program", "compile_program"),
    "verify_program": ("circuits.program", "verify_program"),
    "record": ("circuits.pipeline", "record"),
    "lesion": ("circuits.graph.lesion", "lesion"),
    "visualise": ("circuits.featvis", "visualise"),
    "dataset_examples": ("circuits.featvis", "dataset_examples"),
    "find_motifs": ("circuits.motifs", "find"),
    "universality": ("circuits.motifs.matching", "universality"),
    "diff": ("circuits.compare", "diff"),
    "plant": ("circuits.compare.audit", "plant"),
    "audit": ("circuits.compare.audit", "find"),
    "score_audit": ("circuits.compare.audit", "score"),
    "scan": ("circuits.scanning.run", "scan"),
    "Catalog": ("circuits.catalog", "Catalog"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'circuits' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
