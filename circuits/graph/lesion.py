"""Lesions: silence neurons and see what the network's output does without them.

    lesion(model, ["conv3:7"], images)                 -> Lesion (logits with and without, what changed)
    lesion(model, ["conv3:7", "conv3:9"], images, mode="mean")

A lesioned neuron's map is replaced by zero (``mode="zero"``) or by its mean over the images, position by
position (``"mean"``: the neuron still says what it says on average, but no longer follows the image).
The forward runs on the graph's private eval-mode copy through an ``fx.Interpreter`` that replaces the
lesioned channels the moment their layer is computed, so every later layer sees the lesion; no hook is
put on any module, and the caller's model is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx

from circuits import arguments
from circuits.errors import UsageError

MODES = ("zero", "mean")


@dataclass
class Lesion:
    """The output of the network on the same images, intact and with ``neurons`` silenced."""

    neurons: list[str]
    mode: str
    baseline: torch.Tensor  # [N, classes]: the intact network's logits
    logits: torch.Tensor  # [N, classes]: with the lesion

    @property
    def changed(self) -> float:
        """Share of images whose predicted class the lesion changes."""
        return float((self.baseline.argmax(1) != self.logits.argmax(1)).float().mean())

    @property
    def effect(self) -> torch.Tensor:
        """Mean change of each logit, [classes] (negative: the lesion lowers it)."""
        return (self.logits - self.baseline).mean(0)

    def accuracy(self, labels) -> tuple[float, float]:
        """Task accuracy on ``labels``, intact and lesioned."""
        labels = torch.as_tensor(labels)
        return (float((self.baseline.argmax(1) == labels).float().mean()),
                float((self.logits.argmax(1) == labels).float().mean()))  # fmt: skip

    def __repr__(self) -> str:
        return f"<Lesion of {', '.join(self.neurons)} ({self.mode}): prediction changed on {self.changed:.1%} of images>"


def lesion(model, neurons, data, mode: str = "zero", batch_size: int = 256) -> Lesion:
    """The network's logits on ``data`` (images), intact and with ``neurons`` (``LAYER:CHANNEL`` ids, one or a
    list) replaced by zero or by their mean map over ``data``."""
    from circuits.graph import build_graph
    from circuits.graph.run import check_data, eval_mode

    graph = build_graph(model)
    if arguments.text(mode, "mode") not in MODES:
        raise UsageError(f"unknown lesion mode '{mode}': use zero (silence) or mean (its average map)")
    names = [neurons] if isinstance(neurons, str) else list(neurons)
    if not names:
        raise UsageError("no neurons to lesion: give at least one LAYER:CHANNEL")
    targets: dict[str, list[int]] = {}
    for name in names:
        layer, channel = graph.neuron(name)
        if graph.layers[layer].kind == "input":
            raise UsageError(f"{name} is an input channel; lesion a neuron of a later layer")
        targets.setdefault(graph.layers[layer].node, []).append(channel)
    data = check_data(graph, data)
    means = _means(graph, data, targets, batch_size) if mode == "mean" else None
    baseline, lesioned = [], []
    with torch.no_grad(), eval_mode(graph.gm):
        for first in range(0, len(data), batch_size):
            x = data[first : first + batch_size]
            baseline.append(_logits(_Lesioned(graph.gm, {}).run(x)))
            lesioned.append(_logits(_Lesioned(graph.gm, targets, means).run(x)))
    return Lesion([f"{graph.neuron(n)[0]}:{graph.neuron(n)[1]}" for n in names], mode, torch.cat(baseline),
                  torch.cat(lesioned))  # fmt: skip


class _Lesioned(fx.Interpreter):
    """Runs the model, replacing the lesioned channels of each lesioned node as soon as it is computed."""

    def __init__(self, gm, targets: dict[str, list[int]], means: dict | None = None):
        super().__init__(gm)
        self.targets, self.means = targets, means

    def run_node(self, n):
        result = super().run_node(n)
        channels = self.targets.get(n.name)
        if channels:
            result = result.clone()  # a copy: an in-place op after it must not undo the lesion
            for c in channels:
                result[:, c] = 0.0 if self.means is None else self.means[n.name][c]
        return result


def _means(graph, data, targets, batch_size) -> dict[str, torch.Tensor]:
    """Each lesioned node's mean map over the images: [C, ...]."""
    from circuits.graph.run import node_values

    sums = {}
    for first in range(0, len(data), batch_size):
        values = node_values(graph, data[first : first + batch_size], set(targets))
        for name in targets:
            total = values[name].sum(0)
            sums[name] = total if name not in sums else sums[name] + total
    return {name: total / len(data) for name, total in sums.items()}


def _logits(out) -> torch.Tensor:
    """The model's output (its first, when it returns several), as [N, classes]."""
    while isinstance(out, tuple | list):
        out = out[0]
    return out.detach().reshape(len(out), -1).cpu()
