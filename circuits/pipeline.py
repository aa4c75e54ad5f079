"""One neuron, one pipeline: extract -> emit -> verify -> record, written once.

The extract command, the zoo's shared catalog, the faithfulness benchmark and the tests all run these
steps; they call :func:`compile_neuron` (or :func:`compile_circuit` on a circuit they already hold) and
:func:`record` instead of wiring emit, verify and the catalog together themselves.

    compiled = compile_neuron("zoo:plain-cnn-sparse", "conv3:5", load_data("toyworld:256:12345"), top_k=8)
    compiled.report["r2"]; compiled.write("conv3_5.py"); record(catalog, "zoo:plain-cnn-sparse", compiled)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from circuits import arguments
from circuits.circuit import Circuit, as_circuit
from circuits.errors import UsageError


@dataclass
class Compiled:
    """A circuit, its emitted module (FAITHFULNESS filled in) and the measurement behind it."""

    circuit: Circuit
    module: object  # circuits.compile.EmittedModule
    report: dict  # circuits.compile.verify(): the target's numbers and every neuron's
    data: str | None  # the probe-data spec the numbers were measured on
    simplifications: list[dict] | None = None  # with simplify=True: every collapse tried

    @property
    def r2(self) -> float | None:
        return self.report["r2"]

    @property
    def faithfulness(self) -> dict:
        """What the catalog stores with the module: the report and the data it was measured on."""
        return {**self.report, "data": self.data}

    def write(self, path: str | Path) -> Path:
        """Write the module (and its .npz of large kernels, if any) to ``path``."""
        return self.module.write(path)

    def _repr_html_(self) -> str:
        import html

        from circuits.formatting import faithfulness_summary

        return f"<pre>{html.escape(repr(self.circuit))}\n{html.escape(faithfulness_summary(self.report))}</pre>"


def compile_circuit(circuit, model, data, *, data_spec: str | None = None, simplify: bool = False,
                    motifs: list | None = None, inline_limit: int = 25, activations: dict | None = None,
                    device=None, dropped: str = "best") -> Compiled:  # fmt: skip
    """Emit ``circuit`` and measure it against ``model`` on ``data`` (images); the numbers go into the
    module's FAITHFULNESS block. ``simplify`` tries the collapsed forms that the circuit's motifs suggest
    (found on the model when ``motifs`` is None) and keeps those within tolerance. ``activations``
    ({layer: tensor} on ``data``) is filled and reused across calls, to verify many circuits in one pass.
    ``device`` is where the model runs on ``data``; the numbers and the code are the same on every device.
    ``dropped="best"`` replaces each neuron's pruned inputs by their mean contribution on ``data`` where that
    fits the neuron better than leaving them out, ``"mean"`` everywhere, ``"zero"`` nowhere
    (:mod:`circuits.compile.dropped`).
    """
    from circuits.compile import emit, verify
    from circuits.compile.dropped import resolve
    from circuits.compile.faithfulness import recorded
    from circuits.graph import build_graph

    circuit = as_circuit(circuit)
    graph = build_graph(model)
    acts = activations if activations is not None else {}
    _capture(graph, data, circuit, acts, device)
    tried = None
    if simplify:
        from circuits.compile.collapse import circuit_motifs
        from circuits.compile.collapse import simplify as run_simplify

        found = circuit_motifs(graph, circuit) if motifs is None else motifs
        result = run_simplify(circuit, found, graph, data, activations=acts, inline_limit=inline_limit, device=device,
                              dropped=dropped, data_spec=data_spec)  # fmt: skip
        module, report, tried = result.module, result.report, result.simplifications
    else:
        means = resolve(dropped, circuit, graph, data, activations=acts, data_spec=data_spec, device=device,
                        motifs=motifs, inline_limit=inline_limit)  # fmt: skip
        module = emit(circuit, motifs=motifs, inline_limit=inline_limit, dropped=means)
        report = verify(module, graph, data, activations=acts, device=device)
    module = replace(module, code=recorded(module.code, report, data_spec))
    return Compiled(circuit=circuit, module=module, report=report, data=data_spec, simplifications=tried)


def compile_neuron(model, target: str, data, *, depth: int = 1, top_k: int = 8, method: str = "weights",
                   threshold: float | None = None, through: str | None = None, probe=None, progress=None,
                   data_spec: str | None = None, simplify: bool = False, motifs: list | None = None,
                   inline_limit: int = 25, activations: dict | None = None, device=None,
                   dropped: str = "best") -> Compiled:  # fmt: skip
    """Extract ``target``'s circuit (see :func:`circuits.extraction.extract`; ``probe`` images rank edges for
    ``method="attribution"``), then :func:`compile_circuit` it on ``data``."""
    from circuits.extraction import extract
    from circuits.graph import build_graph

    model = build_graph(model)  # traced once, for the extraction and the measurement
    circuit = extract(model, target, depth=depth, top_k=top_k, method=method, data=probe, threshold=threshold,
                      through=through, progress=progress, device=device)  # fmt: skip
    return compile_circuit(circuit, model, data, data_spec=data_spec, simplify=simplify, motifs=motifs,
                           inline_limit=inline_limit, activations=activations, device=device,
                           dropped=dropped)  # fmt: skip


def record(catalog, model, circuit, compiled: Compiled | None = None, parameters: dict | None = None,
           architecture: str | None = None) -> dict:  # fmt: skip
    """Store ``model`` (registered by weights hash), the whole ``circuit`` and, if given, its compiled module
    in ``catalog`` (a :class:`circuits.catalog.Catalog`), in one transaction. ``parameters`` replaces the
    circuit's own (extract's) parameters in what is stored, e.g. the command-line arguments.

    Returns ``{"circuit": id, "module": id or None}``.
    """
    from circuits.catalog import Catalog
    from circuits.graph import build_graph

    if not isinstance(catalog, Catalog):
        raise UsageError(f"record needs a circuits.Catalog(path) to store into, got {arguments.shown(catalog)}")
    graph = build_graph(model)
    circuit = compiled.circuit if circuit is None and compiled is not None else as_circuit(circuit)
    payload = circuit.to_json()
    payload["model"] = graph.spec or payload.get("model")
    if parameters is not None:
        payload["parameters"] = parameters
    with catalog.transaction():
        catalog.add_model(graph.weights_hash, graph.spec or graph.weights_hash[:12],
                          architecture=architecture or _architecture(model), spec=graph.spec,
                          parameters=sum(p.numel() for p in graph.gm.parameters()), layers=list(graph.layers))  # fmt: skip
        circuit_id = catalog.add_circuit(graph.weights_hash, payload)
        module_id = catalog.add_module(circuit_id, compiled.module.code, compiled.faithfulness) if compiled else None
    return {"circuit": circuit_id, "module": module_id}


def stored(catalog, ref: str) -> Circuit:
    """A circuit read back from ``catalog`` by circuit or module id (or unique prefix), with current labels."""
    return Circuit.from_json(catalog.circuit(ref))


def emit_stored(catalog, ref: str, inline_limit: int = 25):
    """Emit a stored circuit again, with no model at hand; returns ``(EmittedModule, how)``.

    ``ref`` names a circuit or a module. The literal module is rebuilt from the circuit (the motifs recorded
    against it give its neurons their roles). Its FAITHFULNESS comes from a stored module that is exactly this
    code (``how == "measured"``), else it stays empty for ``circuits verify`` (``"rebuilt"``). A module ``ref``
    that is not the literal form (emitted with ``--simplify``) is returned as stored when its code needs no
    ``.npz`` (``"stored"``); the catalog keeps code, not the large constants of such a module.
    """
    from circuits.compile import emit
    from circuits.compile.dropped import read_dropped
    from circuits.compile.faithfulness import unrecorded
    from circuits.compile.layout import EmittedModule

    item = catalog.circuit(ref)
    circuit, motifs = Circuit.from_json(item), _stored_motifs(catalog, item)
    module = emit(circuit, motifs=motifs, inline_limit=inline_limit)
    named = catalog.show(ref)
    for module_id in [named["id"]] if named["kind"] == "module" else item["modules"]:
        code = catalog.show(module_id)["code"]
        again = emit(circuit, motifs=motifs, inline_limit=inline_limit, dropped=read_dropped(code))  # its constants
        if unrecorded(code) == again.code:
            return replace(again, code=code), "measured"
    if named["kind"] == "module" and "_CONSTANTS = np.load(" not in named["code"]:
        return EmittedModule(code=named["code"]), "stored"
    return module, "rebuilt"


def _stored_motifs(catalog, item: dict) -> list[dict]:
    """The motif instances recorded against a stored circuit, as ``motifs --json`` dicts."""
    motifs = []
    for instance_id in item["motif_instances"]:
        row = catalog.show(instance_id)
        kind, _, transform = row["motif"].partition("/")
        motifs.append({"kind": kind, "transform": transform or None, "target": row["target"],
                       "members": row["members"], "score": row["score"], "evidence": row["evidence"]})  # fmt: skip
    return motifs


def _capture(graph, data, circuit: Circuit, acts: dict, device=None) -> None:
    """Fill ``acts`` with the activations of every layer the circuit touches (one forward pass)."""
    missing = sorted({a["layer"] for _, a in circuit.nodes(data=True)} - set(acts))
    if missing:
        acts.update(graph.run(data, missing, device=device))


def _architecture(model) -> str | None:
    """The model's class name (a LoadedModel's module, or the nn.Module itself)."""
    module = getattr(model, "module", model)
    return None if isinstance(module, str) or type(module).__name__ == "NeuronGraph" else type(module).__name__
