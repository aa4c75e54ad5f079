"""An activation check of reported motifs that shares nothing with the detector but the model's forward.

A motif's claim "T maps neuron i to neuron j" is checked on *held-out* images: neuron j's maps on the
transformed images against neuron i's maps transformed, correlated over images and positions, allowing
a shift of up to one map pixel (a mirrored map of a stride-2 layer on an even input lands half a pixel
off). A union's claim adds its own invariance, an opponent's only its pair. The detector picks pairs on
its own probe images with its own gates; this check only asks whether each claim holds again elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from circuits.graph import build_graph
from circuits.motifs.transforms import Identity, Reflect, Rotate, disc

CHECK = 0.8


def transform_of(motif) -> torch.nn.Module:
    if motif.transform == "reflect":
        return Reflect()
    if motif.transform == "rotate90":
        return Rotate(90.0)
    return Rotate(float(motif.evidence["angle"]))


def aligned_correlation(expected: torch.Tensor, observed: torch.Tensor, shift: int = 1) -> float:
    """The best correlation of two ``[N, h, w]`` stacks over shifts of up to ``shift`` pixels."""
    best = -1.0
    h, w = expected.shape[-2:]
    s = shift if min(h, w) > 2 * shift + 2 else 0
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            a = expected[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
            b = observed[:, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
            a, b = a.flatten().double(), b.flatten().double()
            a, b = a - a.mean(), b - b.mean()
            denominator = float(a.norm() * b.norm())
            if denominator > 1e-12:
                best = max(best, float(a @ b) / denominator)
    return best


class Checker:
    """Maps of a model's neurons on held-out images and on their transforms, cached per layer."""

    def __init__(self, model, images: torch.Tensor):
        self.graph = build_graph(model)
        self.images = images
        self.cache: dict = {}

    def maps(self, neuron: str, transform, masked: bool) -> torch.Tensor:
        layer, _, channel = neuron.rpartition(":")
        key = (layer, repr(transform), masked)
        if key not in self.cache:
            images = self.images * disc(*self.images.shape[-2:], soft=1.5) if masked else self.images
            self.cache[key] = self.graph.run(transform(images), [layer])[layer]
        return self.cache[key][:, int(channel)]

    def step(self, i: str, j: str, transform) -> float:
        """How well ``j`` on transformed images follows ``i``'s maps transformed."""
        exact = transform.exact_on(self.images.shape)
        base = self.maps(i, Identity(), masked=not exact)
        observed = self.maps(j, transform, masked=not exact)
        if base.dim() == 1:  # a dense neuron: values, not maps
            return aligned_correlation(base[:, None, None], observed[:, None, None], shift=0)
        expected = transform(base.unsqueeze(1)).squeeze(1)
        if not transform.exact_on(base.shape):
            expected, observed = (F.avg_pool2d(x.unsqueeze(1), 3, 1, 1, count_include_pad=False).squeeze(1)
                                  for x in (expected, observed))  # fmt: skip
            mask = transform.valid_mask(*expected.shape[-2:]).bool()
            expected, observed = expected * mask, observed * mask
        return aligned_correlation(expected, observed)

    def holds(self, motif) -> bool:
        """Whether every claim the motif makes holds on the held-out images (>= CHECK)."""
        transform = transform_of(motif)
        members = list(motif.members)
        if motif.kind == "equivariance":
            pairs = list(zip(members, members[1:] + (members[:1] if motif.evidence.get("closed") else [])))
        else:
            pairs = [(members[0], members[1])]
            if motif.kind == "inhibition" and self.step(*pairs[0], transform) < CHECK:
                pairs = [(members[1], members[0])]
        if motif.kind == "union" and self.step(motif.target, motif.target, transform) < CHECK:
            return False
        return all(self.step(i, j, transform) >= CHECK for i, j in pairs)


def precision(model, motifs, images) -> tuple[int, int]:
    """``(held, reported)`` over the equivariance, union and inhibition motifs."""
    checker = Checker(model, images)
    checked = [m for m in motifs if m.kind in ("equivariance", "union", "inhibition")]
    return sum(checker.holds(m) for m in checked), len(checked)
