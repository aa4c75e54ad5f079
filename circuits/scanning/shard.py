"""The function a worker runs: one shard (a layer of a model), its parts, results as JSON text.

``run_shard(task)`` is pure: the task is plain JSON (the model's spec, its weights path and sha256, its weights
hash, the layer, the parts and their arguments, the tool version) and so is what it returns. It loads the model
itself, after checking that the weights file it reads hashes to the plan's sha256, and that the loaded weights
hash to the plan's model id: a worker whose copy differs refuses the shard instead of cataloguing other weights.
Torch runs here, on one thread (the same results on every worker, and one shard per core), seeded.

The JSON is the lossless circuit format (``Circuit.to_json``), the ``motifs --json`` payload, the labels
``Catalog.add_labels`` takes and the pictures ``Catalog.add_pictures`` takes (PNG bytes in base64).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time

from circuits.errors import CircuitsError, ModelLoadError


def run_shard(task: dict) -> str:
    """Run every part of ``task`` (see :meth:`circuits.scanning.plan.Shard.task`); returns JSON text
    ``{"model": id, "layer": ..., "parts": [{"key", "what", "rows": [...], "seconds"}, ...]}``."""
    from circuits import __version__
    from circuits.provenance import _plain

    if task.get("tool_version") != __version__:
        raise CircuitsError(f"this worker runs circuits {__version__} but the scan was planned with "
                         f"{task.get('tool_version')}; install the same version on every worker")  # fmt: skip
    with one_thread():
        loaded, graph = load_checked(task["model"])
        parts = []
        for part in task["parts"]:
            start = time.perf_counter()
            rows = RUNNERS[part["what"]](loaded, graph, task["layer"], part["arguments"])
            parts.append({"key": part["key"], "what": part["what"], "rows": rows,
                          "seconds": round(time.perf_counter() - start, 6)})  # fmt: skip
    result = {"model": task["model"]["id"], "layer": task["layer"], "parts": parts}
    return json.dumps(_plain(result), separators=(",", ":"), allow_nan=False)


def load_checked(model: dict):
    """The model of a task, loaded only from weights that hash to what the plan says."""
    from circuits.graph import build_graph
    from circuits.models import load
    from circuits.scanning.plan import file_sha256

    weights = model.get("weights")
    if model.get("zoo"):  # this worker's own shipped copy, wherever circuits is installed here
        from circuits import zoo

        weights = str(zoo.WEIGHTS_DIR / f"{zoo.canonical(model['spec'].partition(':')[2])}.pt")
    if model.get("sha256") is not None:
        try:
            found = file_sha256(weights)
        except OSError as exc:
            raise ModelLoadError(f"this worker cannot read the weights of {model['spec']} at {weights} "
                                 f"({exc.strerror}); put the file where every worker can read it") from None  # fmt: skip
        if found != model["sha256"]:
            raise ModelLoadError(f"refused the weights of {model['spec']} at {weights}: their sha256 is "
                                 f"{found[:12]}..., the plan's is {model['sha256'][:12]}...; give every worker the "
                                 "same file (or plan again)")  # fmt: skip
    loaded = load(model["spec"], weights=None if model.get("zoo") else weights)
    if loaded.weights_hash != model["id"]:
        raise ModelLoadError(f"refused {model['spec']} on this worker: its weights hash to "
                             f"{loaded.weights_hash[:12]}..., the plan's to {model['id'][:12]}... (a factory that "
                             "initialises at random? seed it, or pass SPEC@WEIGHTS.pt)")  # fmt: skip
    return loaded, build_graph(loaded)


@contextlib.contextmanager
def one_thread():
    """Torch on one thread for the shard, restored after: results do not depend on where a shard ran."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def circuits_part(loaded, graph, layer: str, arguments: dict) -> list[dict]:
    """Every neuron's circuit, as ``Circuit.to_json`` payloads; labels are left to the ``labels`` part (a
    circuit's labels would relabel other layers' neurons, and then the order shards land in would matter)."""
    from circuits.extraction import extract

    payloads = []
    for channel in range(graph.layers[layer].channels):
        circuit = extract(graph, f"{layer}:{channel}", depth=arguments["depth"], top_k=arguments["top_k"],
                          method=arguments["method"])  # fmt: skip
        payload = circuit.to_json()
        payload["model"] = loaded.spec
        payload["parameters"] = dict(arguments)
        payload["nodes"] = [{k: v for k, v in node.items() if k != "label"} for node in payload["nodes"]]
        payloads.append(payload)
    return payloads


def motifs_part(loaded, graph, layer: str, arguments: dict) -> list[dict]:
    from circuits.motifs import find, to_json

    return to_json(loaded.spec, find(graph, kind=arguments["kind"], layer=layer, data=arguments["data"]))["motifs"]


def labels_part(loaded, graph, layer: str, arguments: dict) -> list[dict]:
    from circuits.labels.label import label_neurons

    result = label_neurons(graph, data=arguments["data"], layers=[layer], bar=arguments["bar"])
    return [{"neuron": n.neuron, "label": n.label, "score": round(n.score, 4), "concept": n.concept,
             "evidence": result.evidence(n)} for n in result.labelled()]  # fmt: skip


def pictures_part(loaded, graph, layer: str, arguments: dict) -> list[dict]:
    from circuits.featvis.gallery import make_gallery
    from circuits.featvis.sheets import png_bytes

    gallery = make_gallery(graph, layer, data=arguments["data"], objective=arguments["objective"],
                           steps=arguments["steps"], k=arguments["examples"], seed=arguments["seed"])  # fmt: skip
    return [{"neuron": e.neuron, "kind": e.kind, "rank": e.rank, "png": base64.b64encode(png_bytes(e.image)).decode(),
             "method": gallery.methods[e.kind], "activation": e.activation, "agreement": e.agreement}
            for e in gallery.entries]  # fmt: skip


RUNNERS = {"circuits": circuits_part, "motifs": motifs_part, "labels": labels_part, "pictures": pictures_part}
