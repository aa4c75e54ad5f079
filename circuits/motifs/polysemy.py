"""Polysemantic neurons: the top-activating probe images fall into clusters that differ in content.

Olah et al., "Zoom In: An Introduction to Circuits" (Distill, 2020), and Elhage et al., "Toy Models of
Superposition" (2022): some neurons respond to several unrelated features (cat faces *and* car fronts). In
the toy world every probe image comes with its latent factors (:mod:`circuits.data.toyworld`), so "unrelated"
can be checked rather than eyeballed.

For each neuron:

1. take its ``top`` probe images by peak activation (max over positions);
2. describe *why* it fired on each: the elementwise contribution ``kernel * source patch`` of every direct
   source at the peak position (what the neuron saw, weighted by how it reads it), unit-normalised;
3. split them into two clusters (seeded k-means) and keep the split only if it is real: silhouette at least
   ``min_silhouette`` and each cluster at least ``min_share`` of the images;
4. call the neuron polysemantic when the clusters differ in a *content* factor (the toy world's object
   class ``label`` by default; none for the ``curves`` task, whose label is an orientation): total-variation distance between their label distributions at least
   ``min_distance``, and a permutation test (seeded) below ``alpha`` after a Bonferroni correction over the
   neurons tested. Clusters that differ only in pose (facing, angle, position) are a union over cases, not
   polysemanticity, and are not reported here (:mod:`circuits.motifs.union`).

The motif's ``evidence["clusters"]`` reports, per cluster, its size, label distribution, mean pose factors
and the first image indices.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from circuits.motifs.context import as_context
from circuits.motifs.report import Motif

TOP = 32
MIN_SILHOUETTE = 0.6  # planted curve detectors' top images split at 0.54-0.58 by the curve's size
MIN_SHARE = 0.2
MIN_DISTANCE = 0.5
ALPHA = 0.01
PERMUTATIONS = 500
POSE = ("facing", "angle", "x", "y", "scale")


def polysemantic(model, layer: str | None = None, data=None, *, factors: dict | None = None, top: int = TOP,
                 content: tuple[str, ...] | None = None, min_silhouette: float = MIN_SILHOUETTE,
                 min_share: float = MIN_SHARE, min_distance: float = MIN_DISTANCE, alpha: float = ALPHA,
                 seed: int = 0) -> list[Motif]:  # fmt: skip
    """Polysemantic neurons in ``layer`` (default: every spatial neuron layer). Needs probe data whose latent
    factors are known: a ``toyworld`` spec, or a tensor plus ``factors`` (``{"label": array, ...}``).

    Returns
    -------
    Motifs of kind ``polysemantic`` with ``target`` the neuron, no members, ``score`` the label distance
    between the clusters, and the clusters in the evidence.
    """
    ctx = as_context(model, data, factors=factors)
    if ctx.data is None or not ctx.factors:
        return []
    if content is None:  # the curves task's label is an orientation class: pose, not content
        content = () if ctx.factors.get("task") == "curves" else ("label",)
    found = []
    for name in ctx.analysable(layer):
        for part in ctx.parts(name):
            found.extend(_layer(ctx, part, top, content, min_silhouette, min_share, min_distance, alpha, seed))
    return found


def _layer(ctx, layer, top, content, min_silhouette, min_share, min_distance, alpha, seed) -> list[Motif]:
    info = ctx.graph.layers[layer]
    if info.preact is None or len(info.shape) != 3:
        return []
    acts = ctx.activations([layer])
    n = acts.shape[0]
    k = min(top, n // 2)
    if k < 8:
        return []
    flat = acts.flatten(2)
    peak, where = flat.max(-1)  # [N, C]
    weights = ctx.direct(layer)
    candidates = []
    for c in range(info.channels):
        order = torch.argsort(peak[:, c], descending=True, stable=True)[:k]
        if float(peak[order[-1], c]) <= 0:
            continue  # fires on fewer than k images: no set of top images to split
        features = _contributions(ctx, weights, c, order, where[order, c], acts.shape[-1])
        split = _two_clusters(features, seed)
        if split is None:
            continue
        labels, silhouette = split
        share = min(labels.mean(), 1 - labels.mean())
        if silhouette < min_silhouette or share < min_share:
            continue
        candidates.append((c, order.numpy(), labels, silhouette))
    found = []
    tests = max(len(candidates), 1)
    for c, images, labels, silhouette in candidates:
        for factor in content:
            values = np.asarray(ctx.factors.get(factor))[images] if factor in ctx.factors else None
            if values is None:
                continue
            distance, p = _label_test(values, labels, seed)
            if distance >= min_distance and p * tests <= alpha:
                neuron = f"{layer}:{c}"
                evidence = {"layer": layer, "factor": factor, "distance": distance, "p_value": p,
                            "silhouette": silhouette, "top_images": len(images),
                            "clusters": [_describe(ctx.factors, images[labels == g], factor) for g in (0, 1)]}  # fmt: skip
                found.append(Motif("polysemantic", None, neuron, (), distance, evidence))
                break
    return found


def _contributions(ctx, weights, channel, images, positions, width) -> torch.Tensor:
    """``[k, D]``: kernel * source patch at each image's peak position, every direct source, unit rows."""
    rows = []
    for ks in weights.kernel_sets:
        source = _source_acts(ctx, ks.source)[images]
        kernel = ks.kernels[channel].to(source.dtype)  # [C_s, kh, kw]
        kh, kw = kernel.shape[-2:]
        if ks.position is None or ks.stride is None:
            rows.append((source.flatten(1) * kernel.flatten()[None]).reshape(len(images), -1))
            continue
        (py, px), (y0, x0), (sy, sx) = ks.position, ks.origin, ks.stride
        padded = F.pad(source, (kw, kw, kh, kh))
        patches = []
        for i, pos in enumerate(positions.tolist()):
            ty, tx = divmod(pos, width)
            top, left = y0 + (ty - py) * sy + kh, x0 + (tx - px) * sx + kw
            patches.append(padded[i, :, top : top + kh, left : left + kw])
        rows.append((torch.stack(patches) * kernel[None]).reshape(len(images), -1))
    features = torch.cat(rows, dim=1).double()
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _source_acts(ctx, source: str) -> torch.Tensor:
    if ctx.graph.layers[source].kind == "input":
        return ctx.data.double()
    return ctx.activations([source]).double()


def _two_clusters(x: torch.Tensor, seed: int, iterations: int = 50, restarts: int = 4):
    """Seeded 2-means (k-means++ starts, best of ``restarts``): (labels as a 0/1 array, silhouette)."""
    g = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(restarts):
        first = int(torch.randint(len(x), (1,), generator=g))
        d = ((x - x[first]) ** 2).sum(1)
        second = int(torch.multinomial(d / d.sum(), 1, generator=g)) if d.sum() > 0 else (first + 1) % len(x)
        centres = x[[first, second]].clone()
        for _ in range(iterations):
            labels = torch.cdist(x, centres).argmin(1)
            if labels.min() == labels.max():
                break
            new = torch.stack([x[labels == k].mean(0) for k in (0, 1)])
            if torch.allclose(new, centres):
                break
            centres = new
        labels = torch.cdist(x, centres).argmin(1)
        if labels.min() == labels.max():
            continue
        inertia = float(((x - centres[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels)
    if best is None:
        return None
    labels = best[1]
    return labels.numpy().astype(int), _silhouette(x, labels)


def _silhouette(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette (Rousseeuw 1987) with Euclidean distances."""
    d = torch.cdist(x, x)
    scores = []
    for i in range(len(x)):
        same = labels == labels[i]
        if same.sum() <= 1:
            scores.append(0.0)
            continue
        a = float(d[i, same].sum() / (same.sum() - 1))
        b = float(d[i, ~same].mean())
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(scores))


def _label_test(values: np.ndarray, labels: np.ndarray, seed: int, permutations: int = PERMUTATIONS):
    """Total-variation distance between the two clusters' value distributions, and its permutation p-value."""

    def distance(assign):
        cats = np.unique(values)
        p = np.array([(values[assign == 0] == v).mean() for v in cats])
        q = np.array([(values[assign == 1] == v).mean() for v in cats])
        return 0.5 * float(np.abs(p - q).sum())

    observed = distance(labels)
    rng = np.random.default_rng(seed)
    hits = sum(distance(rng.permutation(labels)) >= observed - 1e-12 for _ in range(permutations))
    return observed, (hits + 1) / (permutations + 1)


def _describe(factors: dict, images: np.ndarray, factor: str) -> dict:
    values = np.asarray(factors[factor])[images]
    names = factors.get(f"{factor}_names") if factor == "label" else None
    counts = {}
    for v in np.unique(values):
        key = names[int(v)] if names is not None and int(v) < len(names) else str(v)
        counts[key] = int((values == v).sum())
    out = {"size": len(images), factor: counts, "images": [int(i) for i in images[:8]]}
    for pose in POSE:
        if pose in factors:
            out[f"mean_{pose}"] = float(np.mean(np.asarray(factors[pose], dtype=float)[images]))
    return out
