"""Measure a program package against its model: a number, never a claim.

End to end, the program runs on the images alone and every layer is compared with the model's: task
accuracy, agreement of the predicted class, R² of the logits and of each layer and neuron, the largest
error. Locally, each layer runs on the model's own activations of the layers it reads: where the end-to-end
R² falls and the local one does not, the error came from upstream.
"""

from __future__ import annotations

import numpy as np
import torch

from circuits.errors import UsageError

FAITHFULNESS = "FAITHFULNESS.json"
EXACT = 1e-4  # a layer run on the model's own inputs is exact when off by at most this, relative to its scale


class _Fit:
    """Running sums for R² per channel over images and positions, and the largest error."""

    def __init__(self, channels: int):
        self.n = 0
        self.sum = np.zeros(channels)
        self.square = np.zeros(channels)
        self.residual = np.zeros(channels)
        self.max_error = 0.0
        self.scale = 0.0  # the largest |value| of the model's

    def add(self, real: np.ndarray, emitted: np.ndarray) -> None:
        real = real.reshape(*real.shape[:2], -1).astype(np.float64)
        emitted = emitted.reshape(real.shape)
        self.n += real.shape[0] * real.shape[2]
        self.sum += real.sum((0, 2))
        self.square += (real**2).sum((0, 2))
        self.residual += ((real - emitted) ** 2).sum((0, 2))
        self.scale = max(self.scale, float(np.abs(real).max()))
        finite = np.isfinite(emitted).all()
        self.max_error = max(self.max_error, float(np.abs(real - emitted).max()) if finite else float("inf"))

    def total(self) -> np.ndarray:
        return self.square - self.sum**2 / max(self.n, 1)

    def r2(self) -> float | None:
        """Over the whole layer: 1 - residual / variance, each neuron about its own mean."""
        total = float(self.total().sum())
        return None if total <= 1e-12 * max(self.n, 1) else 1.0 - float(self.residual.sum()) / total

    def per_channel(self) -> list[float | None]:
        total = self.total()
        floor = 1e-12 * max(self.n, 1)
        return [None if t <= floor else round(1.0 - r / t, 6) for r, t in zip(self.residual, total)]


def verify_program(folder, model, data, batch_size: int = 128, check_weights: bool = True, device=None) -> dict:
    """The program in ``folder`` against ``model`` on ``data`` (images, or a Labelled set whose class labels
    give the task accuracy too)."""
    from circuits.graph import build_graph
    from circuits.program.package import import_package, read_manifest

    manifest = read_manifest(folder)
    graph = build_graph(model)
    if check_weights and manifest["weights_sha256"] != graph.weights_hash:
        raise UsageError(f"the program was compiled from weights {manifest['weights_sha256'][:12]}..., not this model's "
                         f"{graph.weights_hash[:12]}...: verify it against the model it came from")  # fmt: skip
    program = import_package(folder)
    images = getattr(data, "images", data)
    labels = getattr(data, "labels", None)
    if not isinstance(images, torch.Tensor):
        raise UsageError("data must be images (a tensor N x C x H x W) or toy-world images with labels")
    layers = [entry["layer"] for entry in manifest["layers"]]
    logits_layer = manifest["logits"]
    wide = hasattr(program.LAYERS[logits_layer], "preact")
    fits = {name: (_Fit(len(program.LAYERS[name].NEURONS)), _Fit(len(program.LAYERS[name].NEURONS))) for name in layers}
    logit_fit, agree, correct, model_correct = None, 0, 0, 0
    for first in range(0, len(images), batch_size):
        batch = images[first : first + batch_size]
        real = {k: v.double().numpy() for k, v in graph.run(batch, [manifest["input"], *layers], device=device).items()}
        real_logits = graph.run(batch, [logits_layer], preact=wide, device=device)[logits_layer].double().numpy()
        acts = program.run(batch.double().numpy())
        for name in layers:
            end_to_end, local = fits[name]
            end_to_end.add(real[name], acts[name])
            local.add(real[name], program.LAYERS[name].run(real))
        emitted = program.LAYERS[logits_layer].preact(acts) if wide else acts[logits_layer]
        logit_fit = logit_fit or _Fit(real_logits.shape[1])
        logit_fit.add(real_logits, emitted)
        predicted, expected = _classes(emitted), _classes(real_logits)
        agree += int((predicted == expected).sum())
        if labels is not None:
            truth = np.asarray(labels[first : first + batch_size])
            correct += int((predicted == truth).sum())
            model_correct += int((expected == truth).sum())
    n = len(images)
    by_layer = {entry["layer"]: entry for entry in manifest["layers"]}
    return {
        "schema_version": 1, "images": n, "agreement": agree / n,
        "accuracy": correct / n if labels is not None else None,
        "model_accuracy": model_correct / n if labels is not None else None,
        "logits_r2": _round(logit_fit.r2()), "max_logit_error": logit_fit.max_error,
        "layers": [{"layer": name, "r2": _round(fits[name][0].r2()), "r2_local": _round(fits[name][1].r2()),
                    "max_error": fits[name][0].max_error, "exact": by_layer[name]["exact"],
                    "exact_measured": (fits[name][1].max_error <= EXACT * max(1.0, fits[name][1].scale)
                                       if by_layer[name].get("complete") else None)}
                   for name in layers],
        "neurons": {f"{name}:{c}": r2 for name in layers for c, r2 in enumerate(fits[name][0].per_channel())},
    }  # fmt: skip


def load_verify_data(spec: str, model, normalize=None):
    """Images to verify on, with their class labels where the spec is toy-world images (task accuracy)."""
    from circuits.data import model_data
    from circuits.data.probe import model_labelled

    if isinstance(spec, str) and spec.strip().partition(":")[0] == "toyworld":
        return model_labelled(spec, model, normalize)
    return model_data(spec, model, normalize)


def _classes(logits: np.ndarray) -> np.ndarray:
    return logits.reshape(len(logits), logits.shape[1], -1).mean(-1).argmax(1)


def _round(value):
    return None if value is None else round(value, 6)


def record_faithfulness(folder, report: dict, data_spec: str | None) -> None:
    """Write the numbers into the package: FAITHFULNESS.json, and PROGRAM.md rendered with them."""
    import json
    from pathlib import Path

    from circuits.program.package import read_manifest
    from circuits.program.report import program_md
    from circuits.pyfiles import write_atomic

    folder = Path(folder)
    stored = {**report, "data": data_spec}
    write_atomic(folder / FAITHFULNESS, json.dumps(stored, indent=1).encode())
    write_atomic(folder / "PROGRAM.md", program_md(read_manifest(folder), stored).encode())
