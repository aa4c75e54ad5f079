"""Motif measurements written into the zoo's model cards.

These are small, self-contained measurements on the zoo's own conv stacks (``conv1 -> conv2 -> conv3`` with
a functional ReLU after each conv), so the cards can state numbers without depending on the rest of the
library:

- :func:`reflection_unions` — Distill's "union over cases" for reflection (Olah et al., "Naturally Occurring
  Equivariance in Neural Networks", 2020): a neuron whose response is unchanged by a horizontal flip while
  two of its strongest positive inputs are mirror images of each other.
- :func:`curve_families` — orientation tuning of early neurons to arcs, and families of neurons whose tuning
  curves are rotated copies of each other (Cammarata et al., "Curve Detectors", 2020).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def pooled_activations(module: nn.Module, images: torch.Tensor, layers, pool: str = "max") -> dict[str, np.ndarray]:
    """``{layer: N x C}`` activations of the named layers (``conv1`` is ReLU of conv1, ``fc`` the logits),
    max-pooled over space (``pool="max"``) or read at the centre of the map (``pool="center"``).

    Captured by :func:`circuits.graph.run.run` on a private eval-mode copy: ``module`` and its mode are
    never touched."""
    from circuits.graph import build_graph

    acts = build_graph(module).run(images, list(layers), batch_size=500)
    pooled = {}
    for name, a in acts.items():
        if a.ndim == 4:
            a = a[:, :, a.shape[2] // 2, a.shape[3] // 2] if pool == "center" else a.amax(dim=(2, 3))
        pooled[name] = a.numpy().astype(np.float64)
    return pooled


def _corr_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``a`` with every column of ``b`` (NaN-free: constant -> 0)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    na = np.sqrt((a * a).sum(0))
    nb = np.sqrt((b * b).sum(0))
    denom = np.outer(na, nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a.T @ b) / denom
    return np.nan_to_num(out, nan=0.0)


def reflection_unions(
    module: nn.Module,
    images: torch.Tensor,
    stack=("conv1", "conv2", "conv3", "fc"),
    invariance_min: float = 0.9,
    mirror_min: float = 0.8,
    self_max: float = 0.6,
    top: int = 4,
) -> list[dict]:
    """Neurons that are reflection-invariant and draw on a mirror pair among their top positive inputs.

    For each layer ``T`` of ``stack`` after the first (source ``S`` = the layer before), neuron ``T:k``
    qualifies when corr(act_k(x), act_k(flip x)) >= ``invariance_min`` over ``images`` (activations
    max-pooled over space), and two of its ``top`` strongest positive inputs ``S:i``, ``S:j`` (by the
    signed sum of the conv kernel) satisfy corr(act_i(flip x), act_j(x)) >= ``mirror_min`` and
    corr(act_i(flip x), act_i(x)) < ``self_max``.

    Returns
    -------
    list of dicts ``{layer, channel, invariance, source, pair: [i, j], mirror_corr, self_corr}``, the most
    invariant first, one per qualifying neuron (its best pair).
    """
    acts = pooled_activations(module, images, stack)
    flipped = pooled_activations(module, torch.flip(images, dims=[3]), stack)
    modules = dict(module.named_modules())
    found = []
    for source, target in zip(stack[:-1], stack[1:]):
        invariance = np.diag(_corr_columns(acts[target], flipped[target]))
        mirror = _corr_columns(flipped[source], acts[source])  # [i, j] = corr(act_i(flip x), act_j(x))
        weight = modules[target].weight.detach()
        strength = (weight.sum(dim=(2, 3)) if weight.ndim == 4 else weight).numpy()
        for k in np.argsort(-invariance):
            if invariance[k] < invariance_min:
                break
            order = [int(c) for c in np.argsort(-strength[k]) if strength[k, c] > 0][:top]
            best = None
            for i in order:
                for j in order:
                    if i == j or mirror[i, i] >= self_max or mirror[i, j] < mirror_min:
                        continue
                    if best is None or mirror[i, j] > best[2]:
                        best = (i, j, float(mirror[i, j]), float(mirror[i, i]))
            if best is not None:
                found.append({
                    "layer": target, "channel": int(k), "invariance": float(invariance[k]), "source": source,
                    "pair": [best[0], best[1]], "mirror_corr": best[2], "self_corr": best[3],
                    "top_inputs": order,
                })
    found.sort(key=lambda f: -f["invariance"])
    return found


def arc_tuning(module: nn.Module, layers, orientations: int = 16, per_angle: int = 96, seed: int = 5,
               size: int = 32) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mean activation at the centre of each map to arcs whose midpoint sits at the image centre, at
    ``orientations`` evenly spaced angles: ``{layer: C x orientations}``.

    Each angle is shown on the same ``per_angle`` arcs (radius, span, thickness, sub-pixel offset) rotated to
    it, so the tuning curves differ by orientation only. The centre position, not a spatial max, is read
    because an arc contains every local orientation along its span: a max over space would hide the tuning.
    """
    from circuits.data import toyworld

    rng = np.random.default_rng(seed)
    angles = np.arange(orientations) * (360.0 / orientations)
    radius = rng.uniform(0.25, 0.6, per_angle).astype(np.float32)
    span = rng.uniform(100.0, 160.0, per_angle).astype(np.float32)
    thick = rng.uniform(1.2, 2.4, per_angle).astype(np.float32)
    cx = rng.uniform(-0.06, 0.06, per_angle).astype(np.float32)
    cy = rng.uniform(-0.06, 0.06, per_angle).astype(np.float32)
    grid = toyworld._grid(size)
    tuning = {name: [] for name in layers}
    for angle in angles:
        orient = np.full(per_angle, angle, np.float32)
        cov = toyworld._coverage(toyworld._arc_distance(grid, cx, cy, orient, radius, span, thick, size))
        images = torch.from_numpy((0.1 + 0.8 * cov)[:, None].astype(np.float32))
        acts = pooled_activations(module, images, layers, pool="center")
        for name in layers:
            tuning[name].append(acts[name].mean(0))
    return angles, {name: np.stack(parts, axis=1) for name, parts in tuning.items()}


def curve_families(module: nn.Module, layers=("conv1", "conv2"), orientations: int = 16,
                   selectivity_min: float = 0.3, match_min: float = 0.8) -> dict[str, dict]:
    """Orientation-selective neurons per layer and families of rotated copies.

    ``selectivity`` is the length of the mean resultant vector of a neuron's tuning curve above its minimum
    (0: flat, 1: one orientation only; about 0.5 for a cosine-shaped tuning curve). Two selective neurons are rotated copies when one's tuning curve, circularly shifted
    by a non-zero angle, correlates >= ``match_min`` with the other's. A family is a connected group of
    rotated copies; its ``coverage`` is the fraction of the 360° circle (in bins of 360/orientations) within
    one bin of some member's preferred orientation.

    Returns ``{layer: {selective: [...], families: [...], mean_selectivity, n_channels}}``.
    """
    angles, tuning = arc_tuning(module, layers, orientations)
    theta = np.deg2rad(angles)
    report = {}
    for name in layers:
        curves = tuning[name]
        above = curves - curves.min(1, keepdims=True)  # response above the neuron's least-preferred angle
        total = above.sum(1)
        alive = total > 1e-6 * np.maximum(curves.max(1), 1e-12)
        resultant = np.where(alive, np.abs(above @ np.exp(1j * theta)) / np.maximum(total, 1e-12), 0.0)
        preferred = np.rad2deg(np.angle(above @ np.exp(1j * theta))) % 360
        selective = [int(c) for c in np.flatnonzero(resultant >= selectivity_min)]
        links = {}
        for a in selective:
            for b in selective:
                if a >= b:
                    continue
                best = max(
                    (float(np.corrcoef(np.roll(curves[a], s), curves[b])[0, 1]), s) for s in range(1, orientations)
                )
                if best[0] >= match_min:
                    links.setdefault(a, []).append((b, best))
                    links.setdefault(b, []).append((a, best))
        families, seen = [], set()
        for start in selective:
            if start in seen or start not in links:
                continue
            group, stack = set(), [start]
            while stack:
                node = stack.pop()
                if node in group:
                    continue
                group.add(node)
                stack.extend(b for b, _ in links.get(node, []))
            seen |= group
            members = sorted(group)
            corrs = [c for m in members for _, (c, _) in links[m]]
            bins = {int(round(preferred[m] / (360 / orientations))) % orientations for m in members}
            covered = {(b + d) % orientations for b in bins for d in (-1, 0, 1)}
            families.append({
                "members": [f"{name}:{m}" for m in members],
                "preferred_deg": [round(float(preferred[m]), 1) for m in members],
                "mean_shift_corr": round(float(np.mean(corrs)), 3),
                "coverage": round(len(covered) / orientations, 3),
            })
        families.sort(key=lambda f: -len(f["members"]))
        report[name] = {
            "n_channels": int(curves.shape[0]),
            "selective": [
                {"neuron": f"{name}:{c}", "selectivity": round(float(resultant[c]), 3),
                 "preferred_deg": round(float(preferred[c]), 1)} for c in selective
            ],
            "mean_selectivity": round(float(resultant[alive].mean()) if alive.any() else 0.0, 3),
            "families": families,
        }
    return report


def facing_cases(module: nn.Module, images: torch.Tensor, labels, facing) -> list[dict]:
    """For a FacingCNN: per class k, how well its case channels (``conv3:2k`` left, ``conv3:2k+1`` right)
    tell the facings of that class apart, and how little the class neuron ``fc:k`` does. AUROCs of the
    strongest pre-activation per image, left against right within the class (the right channel's reversed, so
    1 is a perfect detector of its own facing for both); ``union_between`` is fc:k's (0.5: invariant);
    ``union_weights`` are fc:k's weights on the two cases and ``union_ranks`` their ranks among its inputs."""
    from circuits.data.toyworld import class_names
    from circuits.graph import build_graph
    from circuits.labels.responses import responses
    from circuits.labels.selectivity import auroc_between

    scores, _ = responses(build_graph(module), images, ["conv3", "fc"])
    labels, facing = np.asarray(labels), np.asarray(facing)
    weights = module.fc.weight.detach().cpu().numpy()
    out = []
    for k, name in enumerate(class_names("objects")):
        inside = labels == k
        left, right = facing[inside] < 0, facing[inside] > 0
        cases = auroc_between(scores["conv3"][inside][:, [2 * k, 2 * k + 1]], left, right)
        between = auroc_between(scores["fc"][inside][:, [k]], left, right)[0]
        out.append({"class": name, "union": f"fc:{k}", "left": f"conv3:{2 * k}", "right": f"conv3:{2 * k + 1}",
                    "left_auroc": round(float(cases[0]), 4), "right_auroc": round(float(1 - cases[1]), 4),
                    "union_between": round(float(between), 4),
                    "union_weights": [round(float(weights[k, c]), 4) for c in (2 * k, 2 * k + 1)],
                    "union_ranks": [int((weights[k] > weights[k, c]).sum()) + 1 for c in (2 * k, 2 * k + 1)]})  # fmt: skip
    return out
