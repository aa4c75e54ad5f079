"""Faithfulness: run an emitted module on the model's real leaf activations and compare every neuron.

Per neuron: R² (1 - residual / total variance over all images and positions), Pearson r, and agreement
on the top-activating images (overlap of the top 10 images by spatial maximum). When every leaf is an
input channel, the target's numbers are end-to-end: image in, neuron out.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from circuits import arguments
from circuits.compile.layout import FAITHFULNESS_BEGIN, FAITHFULNESS_END
from circuits.errors import BadSpecError, UsageError
from circuits.pyfiles import import_file

TOP_IMAGES = 10
DEFAULT_DATA = "toyworld:256:12345"  # held out: the zoo trains on other seeds
_BLOCK = re.compile(re.escape(FAITHFULNESS_BEGIN) + r".*?" + re.escape(FAITHFULNESS_END), flags=re.S)


def probe_spec(model, data: str | None) -> str:
    """The probe data to measure ``model`` on: ``data`` when given, else the held-out toy-world images
    (:data:`DEFAULT_DATA`) for a model made for the toy world (a ``LoadedModel`` whose ``trained_on`` says
    so: zoo and planted models). Any other model is refused rather than measured on images it never saw."""
    if data is not None:
        return data
    if getattr(model, "trained_on", None) is not None:
        return DEFAULT_DATA
    name = getattr(model, "spec", None) or type(model).__name__
    raise UsageError(f"{name} was not made for toy-world images; pass --data with its own images (a folder, .npy "
                     "or .pt), or --data toyworld:256 to measure on toy images anyway")  # fmt: skip


def load_module(path: str | Path):
    """Import an emitted module from its file (it is plain numpy code written by `emit`)."""
    path = Path(path)
    if not path.is_file():
        raise BadSpecError(f"emitted module '{path}' does not exist: check the path")
    try:
        module = import_file(path, "_circuits_emitted", register=False)
    except Exception as exc:
        raise UsageError(f"cannot import '{path}': {type(exc).__name__}: {exc}") from None
    if not all(hasattr(module, a) for a in ("run", "LEAVES", "TARGET", "NEURONS")):
        raise UsageError(f"'{path}' is not a module emitted by circuits (no run/LEAVES/TARGET/NEURONS)")
    return module


def verify(module, model, data: torch.Tensor, check_weights: bool = True, activations: dict | None = None,
           device=None) -> dict:
    """Faithfulness of an emitted module (a path, an :class:`EmittedModule` in memory, or an imported
    module) to ``model`` on ``data``.

    ``activations`` ({layer: tensor} on ``data``) may be passed in when verifying many modules at once.
    ``device`` is where the model runs on ``data``; the numbers are computed on the CPU either way.
    """
    from circuits.compile.layout import EmittedModule
    from circuits.graph import build_graph

    if isinstance(module, (str, Path)):
        module = load_module(module)
    elif isinstance(module, EmittedModule):
        module = module.load()
    if not all(hasattr(module, name) for name in ("LEAVES", "NEURONS", "TARGET", "run")):
        raise UsageError(f"verify needs an emitted module (a path, an EmittedModule from circuits.emit, or the "
                         f"imported module), got {arguments.shown(module)}")  # fmt: skip
    graph = build_graph(model)
    if check_weights and getattr(module, "WEIGHTS_SHA256", None) not in (None, graph.weights_hash):
        raise UsageError(
            "the module was emitted from different weights than this model's "
            f"({module.WEIGHTS_SHA256[:12]}… vs {graph.weights_hash[:12]}…): pass the model it came from"
        )
    neurons = list(module.LEAVES) + list(module.NEURONS)
    for neuron in neurons:
        graph.neuron(neuron)
    layers = sorted({n.rpartition(":")[0] for n in neurons})
    acts = dict(activations or {})
    missing = [layer for layer in layers if layer not in acts]
    if missing:
        acts.update(graph.run(data, missing, device=device))
    real = {n: acts[n.rpartition(":")[0]][:, int(n.rpartition(":")[2])].double().numpy() for n in neurons}
    emitted = module.run({leaf: real[leaf] for leaf in module.LEAVES})
    per_neuron = {n: _compare(real[n], np.asarray(emitted[n])) for n in module.NEURONS}
    end_to_end = all(leaf.rpartition(":")[0] == "input" for leaf in module.LEAVES)
    target = per_neuron[module.TARGET]
    return {
        "target": module.TARGET,
        "images": int(len(data)),
        "end_to_end": end_to_end,
        "r2": target["r2"],
        "pearson": target["pearson"],
        "top_image_agreement": target["top_image_agreement"],
        "max_abs_error": target["max_abs_error"],
        "neurons": per_neuron,
    }


def _compare(real: np.ndarray, emitted: np.ndarray) -> dict:
    """R² and r are None where the real neuron is constant on the data: there is nothing to explain."""
    if real.shape != emitted.shape:
        raise UsageError(f"emitted map has shape {emitted.shape}, the model's has {real.shape}")
    a, b = real.ravel(), emitted.ravel()
    error = float(np.abs(a - b).max()) if a.size else 0.0
    constant = a.std() <= 1e-6 * max(1.0, float(np.abs(a).max()))
    r2 = pearson = None
    if not constant:
        r2 = 1.0 - float(((a - b) ** 2).sum()) / float(((a - a.mean()) ** 2).sum())
        pearson = float(np.corrcoef(a, b)[0, 1]) if b.std() > 0 else 0.0
    peak_real = real.reshape(len(real), -1).max(1)
    peak_emitted = emitted.reshape(len(emitted), -1).max(1)
    k = min(TOP_IMAGES, len(real))
    top_real = set(np.argsort(-peak_real, kind="stable")[:k].tolist())
    top_emitted = set(np.argsort(-peak_emitted, kind="stable")[:k].tolist())
    agreement = len(top_real & top_emitted) / k if k and not constant else None
    return {"r2": r2, "pearson": pearson, "top_image_agreement": agreement, "max_abs_error": error}


def record_faithfulness(path: str | Path, report: dict, data_spec: str | None) -> None:
    """Write the measured numbers into the module file's FAITHFULNESS block (and nothing else)."""
    path = Path(path)
    from circuits.pyfiles import write_atomic

    write_atomic(path, recorded(path.read_text(), report, data_spec, where=f"'{path}'").encode())


def recorded(code: str, report: dict, data_spec: str | None, where: str = "the module") -> str:
    """``code`` with its FAITHFULNESS block holding ``report``'s target numbers and the data they came from."""
    keys = ("target", "images", "end_to_end", "r2", "pearson", "top_image_agreement", "max_abs_error")
    summary = {k: report[k] for k in keys}
    summary["data"] = data_spec
    summary = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in summary.items()}
    lines = ["FAITHFULNESS = {"] + [f"    {k!r}: {v!r}," for k, v in summary.items()] + ["}"]
    if not _BLOCK.search(code):
        raise UsageError(f"{where} has no FAITHFULNESS block: was it emitted by circuits?")
    return _with_block(code, "\n".join(lines))


def unrecorded(code: str) -> str:
    """``code`` with its FAITHFULNESS block as ``emit`` writes it, before any measurement."""
    return _with_block(code, "FAITHFULNESS = None")


def _with_block(code: str, body: str) -> str:
    """``code`` with the text between the FAITHFULNESS markers replaced by ``body``."""
    block = f"{FAITHFULNESS_BEGIN}\n{body}\n{FAITHFULNESS_END}"
    return _BLOCK.sub(lambda _: block, code, count=1)
