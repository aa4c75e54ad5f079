"""Which neuron of one model is which of another: correlation of their activations and the optimal
one-to-one assignment over it.

Shared by the diff (:mod:`circuits.compare.match`, two copies of one architecture) and by universality
(:mod:`circuits.motifs.matching`, the same motif across different models): the primitives that line
neurons up across models live here, with the comparing of models.
"""

from __future__ import annotations

import torch


def hungarian(cost: torch.Tensor) -> tuple[list[int], list[int]]:
    """Minimum-cost assignment (Kuhn-Munkres with potentials, O(n^2 m)) for an ``n x m`` cost, ``n <= m``
    or transposed: returns ``(rows, cols)`` as ``scipy.optimize.linear_sum_assignment`` does."""
    c = cost.double().tolist()
    n, m = len(c), len(c[0]) if c else 0
    if n > m:
        cols, rows = hungarian(cost.T)
        order = sorted(range(len(rows)), key=lambda k: rows[k])
        return [rows[k] for k in order], [cols[k] for k in order]
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    p, way = [0] * (m + 1), [0] * (m + 1)  # p[j]: row matched to column j (1-based, 0 = none)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv, used = [inf] * (m + 1), [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = c[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = sorted((p[j] - 1, j - 1) for j in range(1, m + 1) if p[j] != 0)
    return [r for r, _ in pairs], [col for _, col in pairs]


def assign(score: torch.Tensor) -> tuple[list[int], list[int]]:
    """Rows and columns of the one-to-one assignment that maximises the total ``score``."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # scipy is optional
        return hungarian(-score)
    rows, cols = linear_sum_assignment((-score).double().numpy())
    return [int(r) for r in rows], [int(c) for c in cols]


def neuron_correlation(acts_a: torch.Tensor, acts_b: torch.Tensor) -> torch.Tensor:
    """``[C_a, C_b]`` Pearson correlation over images (and positions when the maps have the same size)."""
    if acts_a.dim() == 4 and acts_b.dim() == 4 and acts_a.shape[2:] == acts_b.shape[2:]:
        x = acts_a.transpose(0, 1).reshape(acts_a.shape[1], -1)
        y = acts_b.transpose(0, 1).reshape(acts_b.shape[1], -1)
    else:
        x = (acts_a.flatten(2).amax(-1) if acts_a.dim() > 2 else acts_a).T
        y = (acts_b.flatten(2).amax(-1) if acts_b.dim() > 2 else acts_b).T
    x = x.double() - x.double().mean(1, keepdim=True)
    y = y.double() - y.double().mean(1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    y = y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (x @ y.T).float()
