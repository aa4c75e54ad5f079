"""Equivariance: neurons of one layer that are transformed copies of each other.

Olah et al., "Naturally Occurring Equivariance in Neural Networks" (Distill, 2020) find families of neurons
that are rotated or mirrored versions of one another (curve detectors at every orientation, left- and
right-facing dog heads), and show the copies are visible twice: in the *weights* (one neuron's weights are
the transformed weights of the other) and in the *activations* (one neuron on the transformed image is the
other on the image, transformed). Both are measured here, reported apart, and combined.

For a transform ``T`` (:mod:`circuits.motifs.transforms`) and the neurons ``i, j`` of a layer:

- **weights**: ``cos(T K_i, K_j)`` where ``K`` are the expanded weights from the input (every path, ReLUs
  read as the identity; docs/neuron-graph.md). ``T`` acts on space only, so RGB channels map to themselves.
  Interpolated rotations compare inside the inscribed disc.
- **activations**: ``corr(act_j(T x), T act_i(x))`` over the probe images and map positions. Interpolated
  rotations cut the images to their inscribed disc first and blur both maps by 3x3, which forgives the
  sub-pixel resampling; neurons silent on the data get no activation evidence.
- **combined**: the mean of the available evidence.

``T`` maps ``i`` to ``j`` when every available kind of evidence is at least ``threshold`` *and* the
combined score beats, by ``margin``, how much each of them is its own copy (``combined[i, i]``,
``combined[j, j]``) and how similar the two already are without the transform: a neuron that is already
invariant, its near-duplicates, and neurons that respond alike anyway are not transformed copies.
Activation evidence alone is weak (random conv neurons on simple images correlate highly after a flip by
chance), which is why the weights must agree too. Matches are made greedily, best first, one
image per neuron (a reflection pairs neurons both ways). Following the matches gives families: cycles (a
closed orbit of ``T``, e.g. four quarter-turned copies) or chains (a partial family).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from circuits.motifs.context import Context, as_context
from circuits.motifs.geometry import shift
from circuits.motifs.report import Motif
from circuits.motifs.transforms import Identity, Reflect, Rotate, Transform

THRESHOLD = 0.8
MARGIN = 0.1
ALPHA = 0.05  # chance level of a weight match (chance_cosine)
DETAIL_THRESHOLD = 0.4  # the match must hold in the kernels' fine structure too (see highpass)
ANGLES = (22.5, 45.0)  # finer rotation steps tried for curve- and line-like families (finest first)
BLOCK_ELEMENTS = 2**25  # numbers per block of kernels (128 MB of float32): bounds the memory of a 224-pixel layer
FIXED_ELEMENTS = 2**27  # numbers of high-passed kernels held at once (512 MB), in weight_similarity(prepare=...)
MIN_ACTIVE = 0.01  # a neuron must vary on this share of the images (and >= 3 of them) to be correlated
MIN_SHIFTED_MAP = 8  # flip offsets are corrected on maps at least this wide (geometry.py)
LED_THRESHOLD = 0.9  # what activations alone must reach to carry a pair the weights cannot speak about
MIN_LED_MAP = 8  # ... on maps at least this wide: on a few pixels a response is mostly where the light is
LED_MARGIN = 0.3  # ... and by how much they must beat self-similarity (random-init MobileNetV2 twins reach 0.26)
FIDELITY = 0.8  # weights speak about a neuron whose linearised pre-activation correlates this well with its real one


@dataclass
class GroupMap:
    """How ``transform`` maps the neurons of a group of layers onto each other.

    ``weights``, ``activations`` and ``combined`` are ``[C, C]`` matrices (row ``i``, column ``j``: how
    much ``T`` of neuron ``i`` looks like neuron ``j``); ``activations`` is NaN where a neuron was silent and
    is ``None`` without data. ``image[i] = j`` holds the accepted one-to-one matches, ``relation`` every pair
    ``(i, j)`` that passes the gates (with its score: a neuron may resemble the mirror image of several
    redundant neurons), ``invariant`` the neurons that are their own copy (``combined[i, i] >= threshold``).
    """

    layers: list[str]
    neurons: list[str]
    transform: Transform
    weights: torch.Tensor | None
    activations: torch.Tensor | None
    combined: torch.Tensor
    image: dict[int, int] = field(default_factory=dict)
    invariant: list[int] = field(default_factory=list)
    clipped: bool = False
    untransformed: torch.Tensor | None = None  # [C, C] the same similarity without the transform
    untransformed_w: torch.Tensor | None = None  # ... of the weights alone
    untransformed_a: torch.Tensor | None = None  # ... of the activations alone
    fidelity: torch.Tensor | None = None  # [C] how well expanded weights describe each neuron (with data)
    gates: dict = field(default_factory=dict)  # each kind of evidence's own verdict, [C, C] bool (carried)
    map_width: int = 0  # the smaller side of the neurons' maps (0: dense neurons)
    detail: torch.Tensor | None = None  # [C, C] weight similarity of the high-passed kernels
    relation: dict[tuple[int, int], float] = field(default_factory=dict)  # every (i, j) passing the gates
    chance: float = 0.0  # the best cosine C neurons' kernels of this size reach by chance (chance_cosine)

    def families(self) -> list[tuple[list[int], bool]]:
        """``(members in transform order, closed)``: chains from their first member, then cycles."""
        preimage = {j: i for i, j in self.image.items()}
        seen: set[int] = set()
        out = []
        for start in sorted(self.image):
            if start in preimage:
                continue
            chain = [start]
            while chain[-1] in self.image:
                chain.append(self.image[chain[-1]])
            seen.update(chain)
            out.append((chain, False))
        for start in sorted(self.image):
            if start in seen:
                continue
            cycle = [start]
            while self.image[cycle[-1]] != start:
                cycle.append(self.image[cycle[-1]])
            seen.update(cycle)
            out.append((cycle, True))
        return out

    def speaking(self) -> torch.Tensor:
        """``[C]`` bool: the weights can speak about the neuron (its fidelity >= FIDELITY). All true without
        data (nothing measures them) and all false without weights."""
        c = len(self.neurons)
        if self.weights is None:
            return torch.zeros(c, dtype=torch.bool)
        if self.fidelity is None:
            return torch.ones(c, dtype=torch.bool)
        return torch.nan_to_num(self.fidelity, nan=0.0) >= FIDELITY

    def speaks(self) -> torch.Tensor:
        """``[C, C]`` bool: the weights can speak about the pair (see :meth:`speaking`: both neurons)."""
        good = self.speaking()
        return good[:, None] & good[None, :]

    def step(self, i: int, j: int) -> dict:
        """The evidence for ``T`` mapping neuron ``i`` to neuron ``j``, and which of it carried the match."""
        return {
            "source": self.neurons[i],
            "target": self.neurons[j],
            "weights": _value(self.weights, i, j),
            "weights_detail": _value(self.detail, i, j),
            "activations": _value(self.activations, i, j),
            "combined": _value(self.combined, i, j),
            "fidelity": [_entry(self.fidelity, i), _entry(self.fidelity, j)] if self.fidelity is not None else None,
            "carried_by": self.carried_by(i, j),
        }

    def carried_by(self, i: int, j: int) -> str:
        """``weights`` (no data), ``weights+activations``, or ``activations`` (activation-led: the weights
        did not confirm the pair and could not speak about it), for a pair that passed."""
        if self.activations is None:
            return "weights"
        weights = self.gates.get("weights")
        return "weights+activations" if weights is not None and bool(weights[i, j]) else "activations"

    def invariance(self, i: int) -> dict:
        """How much neuron ``i`` is its own copy under ``T`` (1: invariant, -1: sign-flipped), and whether
        its weights can speak (see :meth:`speaks`)."""
        return {"weights": _value(self.weights, i, i), "activations": _value(self.activations, i, i),
                "combined": _value(self.combined, i, i), "weights_speak": bool(self.speaking()[i])}  # fmt: skip


def _entry(vector, i):
    v = float(vector[i])
    return None if v != v else v


def _value(matrix, i, j):
    if matrix is None:
        return None
    v = float(matrix[i, j])
    return None if v != v else v


# -- evidence ---------------------------------------------------------------------------------------------


def weight_similarity(kernels: torch.Tensor, transform: Transform, block_elements: int = BLOCK_ELEMENTS,
                      prepare=None, fixed_elements: int = FIXED_ELEMENTS) -> torch.Tensor:  # fmt: skip
    """``[C, C]``: cosine of ``transform`` of neuron ``i``'s kernels with neuron ``j``'s kernels.

    ``kernels`` is ``[C, C_in, kh, kw]``; the transform acts on ``(kh, kw)`` only. Interpolated transforms
    compare inside the inscribed disc, where the transformed kernel is defined. ``prepare`` (e.g.
    :func:`highpass`) is applied to the kernels first.

    Memory: a 224-pixel layer's kernels are hundreds of MB, the matrix a few. The transformed side is made
    ``block_elements`` numbers at a time; the other side is the kernels themselves, divided by their norms
    afterwards (the disc is 0 or 1, so masking one side masks the product), or, with ``prepare``, prepared
    ``fixed_elements`` numbers at a time (the transformed side made again for each such block).
    """
    mask = transform.valid_mask(*kernels.shape[-2:]).to(kernels.dtype)
    whole = bool((mask == 1).all())
    binary = bool(((mask == 0) | (mask == 1)).all())
    per_row = max(kernels[0].numel(), 1)
    rows = max(1, block_elements // per_row)
    c = kernels.shape[0]
    columns = c if prepare is None else max(1, fixed_elements // per_row)
    prepare = prepare or (lambda x: x)
    out = torch.empty(c, c, dtype=kernels.dtype)
    for left in range(0, c, columns):
        fixed = prepare(kernels[left : left + columns])
        if not binary:
            fixed = fixed * mask
        if whole or not binary:
            norms = fixed.flatten(1).norm(dim=1)
        else:
            norms = torch.cat([(fixed[i : i + rows] * mask).flatten(1).norm(dim=1) for i in range(0, len(fixed), rows)])
        for top in range(0, c, rows):
            moved = transform(prepare(kernels[top : top + rows]))
            if not whole:
                moved = moved * mask
            block = _unit(moved.flatten(1)) @ fixed.flatten(1).T
            out[top : top + rows, left : left + columns] = block / norms.clamp_min(1e-12)
            del moved, block
        del fixed
    return out


def activation_similarity(acts: torch.Tensor, moved_acts: torch.Tensor, transform: Transform,
                          min_active: float = MIN_ACTIVE, offsets: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:  # fmt: skip
    """``[C, C]``: correlation of ``transform`` of neuron ``i``'s maps with neuron ``j``'s maps on the
    transformed images, over images and positions. NaN where either neuron is silent on the data.

    ``acts`` are the activations ``[N, C, h, w]`` on the images, ``moved_acts`` those on the transformed
    images (for an interpolated transform, both on disc-cut images). ``offsets`` ``(delta_y, delta_x)`` are
    how far the layer's map on a flipped image lands from the flipped map
    (:func:`circuits.motifs.geometry.flip_offsets`); an exact transform's expected maps are moved by them
    along each flipped axis, so a stride-2 layer's half-pixel shift does not read as a mismatch.
    """
    if acts.dim() == 2:  # dense neurons have no map to move: T maps i to j when j(T x) follows i(x)
        x, y = acts.T.double(), moved_acts.T.double()
        corr = (_unit(x - x.mean(1, keepdim=True)) @ _unit(y - y.mean(1, keepdim=True)).T).float()
        return _silence(corr, acts, moved_acts, min_active)
    expected = transform(acts)
    observed = moved_acts
    mask = transform.valid_mask(*acts.shape[-2:]).bool()
    if not transform.exact_on(acts.shape):
        expected = F.avg_pool2d(expected, 3, stride=1, padding=1, count_include_pad=False)
        observed = F.avg_pool2d(observed, 3, stride=1, padding=1, count_include_pad=False)
    else:
        for dim, delta in _flipped_axes(transform, offsets):
            if acts.shape[dim] < MIN_SHIFTED_MAP:
                continue  # a shift of most of a tiny map's pixels would compare other positions, not fix one
            expected, valid = shift(expected, delta, dim)
            mask = mask & (valid[:, None] if dim == -2 else valid[None, :])
    c = acts.shape[1]
    x = expected[..., mask].transpose(0, 1).reshape(c, -1).double()
    y = observed[..., mask].transpose(0, 1).reshape(c, -1).double()
    corr = (_unit(x - x.mean(1, keepdim=True)) @ _unit(y - y.mean(1, keepdim=True)).T).float()
    return _silence(corr, acts, moved_acts, min_active)


def _flipped_axes(transform: Transform, offsets: tuple[float, float]) -> list[tuple[int, float]]:
    """``(dim, delta)`` for each map axis that ``transform`` reverses, with the offset of the image axis it
    comes from: a reflection reverses x; a quarter turn (``torch.rot90``) turns reversed x into y, a half
    turn reverses both, three quarters turn reversed y into x."""
    dy, dx = offsets
    if isinstance(transform, Reflect):
        axes = [(-1, dx)]
    elif isinstance(transform, Rotate) and transform.quarter_turns:
        axes = {1: [(-2, dx)], 2: [(-2, dy), (-1, dx)], 3: [(-1, dy)]}[transform.quarter_turns]
    else:
        axes = []
    return [(dim, delta) for dim, delta in axes if delta]


def _silence(corr, acts, moved_acts, min_active):
    live = active(acts, min_active) & active(moved_acts, min_active)
    corr[~live, :] = float("nan")
    corr[:, ~live] = float("nan")
    return corr


def active(acts: torch.Tensor, min_active: float = MIN_ACTIVE) -> torch.Tensor:
    """``[C]`` bool: the neuron varies on enough images to correlate.

    An image counts when the neuron's map is not constant on it, or its peak rises above the neuron's
    lowest peak over the images. Peaks alone are not enough: a bounded activation (ReLU6, a sigmoid) that
    saturates somewhere in every image has the same peak everywhere while its maps vary widely.
    """
    if acts.dim() > 2:
        flat = acts.flatten(2)
        peaks = flat.amax(-1)
        varies = (peaks - flat.amin(-1)) > 1e-6
    else:
        peaks, varies = acts, torch.zeros_like(acts, dtype=torch.bool)
    above = (peaks - peaks.amin(0)) > 1e-6
    need = max(3, int(min_active * peaks.shape[0]))
    return (above | varies).sum(0) >= need


def combine(weights: torch.Tensor | None, activations: torch.Tensor | None, how: str = "mean") -> torch.Tensor:
    """The ``mean`` (or ``min``) of the available evidence, entry by entry (activations missing where NaN)."""
    if activations is None:
        return weights.clone()
    if weights is None:
        return activations.clone()
    both = (weights + activations) / 2 if how == "mean" else torch.minimum(weights, activations)
    return torch.where(torch.isnan(activations), weights, both)


def chance_cosine(dims: int, neurons: int, alpha: float = ALPHA) -> float:
    """The cosine that ``neurons`` random kernels of ``dims`` numbers exceed by chance in some ordered pair
    with probability about ``alpha``: ``sqrt(2 ln(C (C - 1) / alpha) / d)`` (a Gaussian tail bound with a
    union bound over the pairs). A 3x3 grey kernel (9 numbers) among 16 neurons cannot show a mirror
    image beyond chance (1.37 > 1); a 5x5 one among 8 needs 0.75, a 7x7x3 one among 64 needs 0.39.
    """
    pairs = max(neurons * (neurons - 1), 1)
    return math.sqrt(2.0 * math.log(pairs / alpha) / max(dims, 1))


def highpass(kernels: torch.Tensor, block_elements: int = BLOCK_ELEMENTS) -> torch.Tensor:
    """Kernels minus their 3x3 binomial blur (zero outside): the fine structure, without the smooth envelope.

    Deep layers' expanded kernels are dominated by a smooth receptive-field envelope, and smooth random
    fields match under *any* transform by chance: on shuffled controls (:mod:`circuits.motifs.control`)
    their cosines reach 0.85 while the high-passed ones stay below 0.3. The blur is symmetric under the
    square's symmetries, so exact transforms commute with it and exact matches stay exact. It is applied
    as two 1-D passes over blocks of ``block_elements`` numbers: a 2-D convolution unfolds every kernel
    nine times over (5.9 GB for one 224-pixel MobileNetV2 layer).
    """
    h, w = kernels.shape[-2:]
    flat = kernels.reshape(-1, h, w)
    out = torch.empty_like(flat)
    rows = max(1, block_elements // max(h * w, 1))
    for first in range(0, flat.shape[0], rows):
        block = flat[first : first + rows]
        out[first : first + rows] = block - _blur(_blur(block, -1), -2) / 16.0
    return out.reshape(kernels.shape)


def _blur(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``[1, 2, 1]`` along ``dim`` (-1 or -2), zero beyond the edges."""
    pad = (1, 1) if dim == -1 else (0, 0, 1, 1)
    p = F.pad(x, pad)
    n = x.shape[dim]
    return p.narrow(dim, 0, n) + 2.0 * p.narrow(dim, 1, n) + p.narrow(dim, 2, n)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


# -- matching ---------------------------------------------------------------------------------------------


def group_map(ctx: Context, layers: list[str], transform: Transform, *, threshold: float = THRESHOLD,
              margin: float = MARGIN, detail_threshold: float = DETAIL_THRESHOLD,
              use_weights: bool = True) -> GroupMap | None:  # fmt: skip
    """The map of ``transform`` on the neurons of ``layers`` (cached on the context); ``None`` when the
    transform cannot act on these maps (a quarter turn of a non-square map)."""
    key = ("group_map", tuple(layers), repr(transform), threshold, margin, detail_threshold, use_weights)
    if key in ctx.memo:
        return ctx.memo[key]
    spatial = ctx.graph.layers[layers[0]].shape[1:]
    if len(spatial) not in (0, 2) or (isinstance(transform, Rotate) and len(set(spatial)) > 1):
        ctx.memo[key] = None
        return None
    weights = activations = same_w = same_a = detail = None
    chance = 0.0
    clipped = False
    kernels = _traceable_kernels(ctx, layers) if use_weights else None
    if kernels is not None:
        kernels, clipped = kernels
        if isinstance(transform, Rotate) and kernels.shape[-1] != kernels.shape[-2]:
            kernels = _square(kernels)
        weights = weight_similarity(kernels, transform)
        dims = kernels.shape[1] * int(transform.valid_mask(*kernels.shape[-2:]).sum())
        chance = chance_cosine(dims, kernels.shape[0])
        # high-passed block by block, never as a whole copy beside the kernels (a few seconds per transform)
        detail = weight_similarity(kernels, transform, prepare=highpass)
        same_w = _untransformed(ctx, layers, kernels)
    fidelity = None
    if ctx.data is not None:
        masked = not transform.exact_on(ctx.data.shape)
        acts = ctx.activations(layers, masked=masked)
        moved = ctx.activations(layers, transform, masked=masked)
        activations = activation_similarity(acts, moved, transform, offsets=_offsets(ctx, layers))
        same_a = activation_similarity(acts, acts, Identity())
        if weights is not None:
            fidelity = ctx.fidelity(layers)
    if weights is None and activations is None:  # a layer behind a multiplicative gate, without data
        ctx.memo[key] = None
        return None
    result = GroupMap(layers, ctx.neurons(layers), transform, weights, activations,
                      torch.zeros(0), clipped=clipped, fidelity=fidelity)  # fmt: skip
    result.map_width = min(spatial) if len(spatial) == 2 else 0
    result.combined = _speaking(result, combine(weights, activations), activations)
    result.untransformed = _speaking(result, combine(same_w, same_a), same_a)
    result.untransformed_w, result.untransformed_a = same_w, same_a
    result.detail, result.chance = detail, chance
    _match(result, threshold, margin, detail_threshold, involution=_is_involution(transform))
    ctx.memo[key] = result
    return result


def _offsets(ctx: Context, layers: list[str]) -> tuple[float, float]:
    """The layers' flip offsets (:mod:`circuits.motifs.geometry`), cached; none when their parts disagree."""
    from circuits.motifs.geometry import flip_offsets

    key = ("flip_offsets", tuple(layers))
    if key not in ctx.memo:
        found = {flip_offsets(ctx.graph, name) for name in layers}
        ctx.memo[key] = found.pop() if len(found) == 1 else (0.0, 0.0)
    return ctx.memo[key]


def _traceable_kernels(ctx: Context, layers: list[str]):
    """``ctx.input_kernels(layers)``, or ``None`` where the path from the input passes a multiplicative
    gate (squeeze-excite): such neurons have no expanded weights, so only activations can speak for them."""
    from circuits.errors import UnsupportedOpError

    try:
        return ctx.input_kernels(layers)
    except UnsupportedOpError:
        return None


def _speaking(result: GroupMap, mean: torch.Tensor, activations: torch.Tensor | None) -> torch.Tensor:
    """The mean of the evidence, except where the weights cannot speak about a pair: there, the
    activations alone (where they were measured)."""
    if activations is None or result.weights is None:
        return mean
    return torch.where(~result.speaks() & ~torch.isnan(activations), activations, mean)


def group_maps(ctx: Context, groups: list[list[str]], transforms: list[Transform], **options) -> None:
    """Make (and cache) the map of every transform on each group, one group after another: all transforms
    read the same kernels, and at 224 pixels two groups' kernels may not fit the context's cache together."""
    for layers in groups:
        for transform in transforms:
            group_map(ctx, layers, transform, **options)


def _untransformed(ctx: Context, layers: list[str], kernels: torch.Tensor) -> torch.Tensor:
    """The kernels' similarity without a transform, shared by every transform of the same kernels."""
    key = ("untransformed", tuple(layers), tuple(kernels.shape))
    if key not in ctx.memo:
        ctx.memo[key] = weight_similarity(kernels, Identity())
    return ctx.memo[key]


def _square(kernels: torch.Tensor) -> torch.Tensor:
    """Zero-pad a clipped (non-square) kernel canvas to a square around its centre."""
    kh, kw = kernels.shape[-2:]
    size = max(kh, kw)
    top, left = (size - kh) // 2, (size - kw) // 2
    return F.pad(kernels, (left, size - kw - left, top, size - kh - top))


def _is_involution(transform: Transform) -> bool:
    return isinstance(transform, Reflect) or (isinstance(transform, Rotate) and transform.quarter_turns == 2)


def _match(result: GroupMap, threshold: float, margin: float, detail_threshold: float, involution: bool) -> None:
    """Greedy best-first matching of the pairs that the evidence carries (see :func:`carried`)."""
    m = result.combined
    ok, result.gates = carried(result, threshold, margin, detail_threshold, involution)
    scores = (m + m.T) / 2 if involution else m
    result.invariant = [int(i) for i in torch.nonzero(_self_copies(result, threshold)).flatten()]
    candidates = [(-float(scores[i, j]), int(i), int(j)) for i, j in torch.nonzero(ok).tolist()]
    candidates.sort()
    result.relation = {(i, j): -neg for neg, i, j in candidates}
    has_image, has_preimage = set(), set()
    for _, i, j in candidates:
        if i in has_image or j in has_preimage:
            continue
        if involution and (j in has_image or i in has_preimage):
            continue
        result.image[i] = j
        has_image.add(i)
        has_preimage.add(j)
        if involution:
            result.image[j] = i
            has_image.add(j)
            has_preimage.add(i)


def carried(result: GroupMap, threshold: float = THRESHOLD, margin: float = MARGIN,
            detail_threshold: float = DETAIL_THRESHOLD, involution: bool | None = None):  # fmt: skip
    """``(ok, gates)``: which pairs ``T`` maps one onto the other, and each kind of evidence's own verdict.

    ``gates["weights"]`` (``None`` without weights): the expanded-weight cosine is at least ``threshold``
    and the chance level, and the high-passed cosine at least ``detail_threshold``.
    ``gates["activations"]`` (``None`` without data): the activation correlation is at least
    ``threshold``; a silent neuron passes no activation gate. ``gates["speak"]``: whether the weights can
    speak about the pair (both neurons' :meth:`~circuits.motifs.context.Context.fidelity` at least
    :data:`FIDELITY`).

    Without data the weights decide. With data the activations decide, and the weights confirm the pair
    (carried by both) or, where they can speak, refute it; where they cannot, the pair is *activation-led*
    and, being the only evidence, its activation correlation must reach :data:`LED_THRESHOLD` (0.9) and
    beat self-similarity by :data:`LED_MARGIN` (0.3), on maps at least :data:`MIN_LED_MAP` (8) pixels
    wide: in untrained deep layers many neurons share one smooth response to the object, and on a map of
    a few pixels (or a dense neuron) a response says mostly where the image is bright, so high
    correlations under a transform are common there by chance.
    Either way the combined score (the activations alone for an activation-led pair) must beat by
    ``margin`` each neuron's own invariance and how alike the two already are untransformed.
    """
    involution = _is_involution(result.transform) if involution is None else involution
    w_ok = a_ok = None
    if result.weights is not None:
        w_ok = result.weights >= max(threshold, result.chance)
        if result.detail is not None:
            w_ok &= result.detail >= detail_threshold
        w_ok = _both_ways(w_ok, involution)
    if result.activations is not None:
        a_ok = _both_ways(torch.nan_to_num(result.activations, nan=-1.0) >= threshold, involution)
    speak = result.speaks()
    if a_ok is None:
        ok = w_ok
    else:
        led = _both_ways(torch.nan_to_num(result.activations, nan=-1.0) >= max(threshold, LED_THRESHOLD), involution)
        led &= _beats_self(result.combined, result.untransformed, max(margin, LED_MARGIN), involution)
        led &= result.map_width >= MIN_LED_MAP
        ok = a_ok & led if w_ok is None else a_ok & (w_ok | (~speak & led))
    ok = ok & _beats_self(result.combined, result.untransformed, margin, involution)
    ok = ok & ~torch.eye(ok.shape[0], dtype=torch.bool)
    return ok, {"weights": w_ok, "activations": a_ok, "speak": speak}


def _beats_self(similarity: torch.Tensor, untransformed, margin: float, involution: bool) -> torch.Tensor:
    """The pair's transformed similarity beats, by ``margin``, each neuron's similarity to its own
    transform and how alike the two already are untransformed."""
    scores = (similarity + similarity.T) / 2 if involution else similarity
    diag = torch.diagonal(similarity)
    baseline = torch.maximum(diag[:, None], diag[None, :])
    if untransformed is not None:
        baseline = torch.maximum(baseline, torch.nan_to_num(untransformed, nan=-1.0))
    return scores - baseline >= margin


def _both_ways(ok: torch.Tensor, involution: bool) -> torch.Tensor:
    return ok & ok.T if involution else ok


def _self_copies(result: GroupMap, threshold: float) -> torch.Tensor:
    """``[C]`` bool: neurons that are their own copy by the evidence that can speak about them."""
    diag = torch.diagonal(result.combined) >= threshold
    if result.activations is not None:
        diag &= torch.nan_to_num(torch.diagonal(result.activations), nan=-1.0) >= threshold
    return diag


# -- motifs -----------------------------------------------------------------------------------------------


def default_transforms(angles=ANGLES) -> list[Transform]:
    """Reflection, the quarter turn, and the finer rotations in ``angles`` (finest first)."""
    return [Reflect(), Rotate(90.0), *(Rotate(float(a)) for a in sorted(angles))]


def family_motifs(group: GroupMap, include_invariant: bool = False) -> list[Motif]:
    """One ``equivariance`` motif per family of ``group`` (and per invariant neuron if asked)."""
    transform = group.transform
    motifs = []
    for members, closed in group.families():
        steps = [group.step(a, b) for a, b in zip(members, members[1:] + members[:1] if closed else members[1:])]
        score = sum(s["combined"] for s in steps) / len(steps)
        evidence = {
            "layer": _group_name(group),
            "closed": closed,
            "weights": _mean([s["weights"] for s in steps]),
            "activations": _mean([s["activations"] for s in steps]),
            "steps": steps,
            "self_similarity": [group.invariance(i)["combined"] for i in members],
            "carried_by": "activations" if any(s["carried_by"] == "activations" for s in steps) else steps[0]["carried_by"],
        }
        if transform.name == "rotate":
            evidence["angle"] = float(transform.angle)
        if group.clipped:
            evidence["clipped"] = True
        motifs.append(Motif("equivariance", transform.name, None, tuple(group.neurons[i] for i in members),
                            max(0.0, min(1.0, score)), evidence))  # fmt: skip
    if include_invariant:
        for i in group.invariant:
            if i in group.image:
                continue
            inv = group.invariance(i)
            motifs.append(Motif("equivariance", transform.name, None, (group.neurons[i],),
                                max(0.0, min(1.0, inv["combined"])),
                                {"layer": _group_name(group), "invariant": True, **inv}))  # fmt: skip
    return motifs


def _group_name(group: GroupMap) -> str:
    return group.layers[0] if len(group.layers) == 1 else ",".join(group.layers)


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def equivariance(model, layer: str | None = None, data=None, *, transforms=None, angles=ANGLES,
                 threshold: float = THRESHOLD, margin: float = MARGIN, include_invariant: bool = False,
                 use_weights: bool = True) -> list:  # fmt: skip
    """Families of transformed copies in ``layer`` (default: every spatial neuron layer).

    Parameters
    ----------
    model : a spec, module, LoadedModel, NeuronGraph, or a :class:`~circuits.motifs.context.Context`.
    data : probe images (tensor or spec such as ``toyworld:256``) for activation evidence; weights alone
        without it.
    transforms : Transform values or names (``reflect``, ``rotate90``, ``rotate``); default: reflection,
        the quarter turn, and rotations by each of ``angles`` degrees.
    threshold : minimum combined score (cosine / correlation) for ``T`` to map one neuron to another.
    margin : how much that score must beat each neuron's similarity to its own transform.
    include_invariant : also report neurons that are their own copy (one-member families).

    Returns
    -------
    list of :class:`~circuits.motifs.report.Motif` of kind ``equivariance``, ``members`` in transform order.
    A family at a finer rotation supersedes the coarser-step families among the same neurons.

    Examples
    --------
    >>> [m.members for m in equivariance("planted:curves", transforms=["rotate90"])]
    [('curves:0', 'curves:2', 'curves:4', 'curves:6'), ('curves:1', 'curves:3', 'curves:5', 'curves:7')]
    """
    ctx = as_context(model, data)
    motifs = []
    names = ctx.analysable(layer)
    for name in ctx.scan(names, "equivariance", lambda n: [ctx.parts(n)], weights=use_weights):
        layers = ctx.parts(name)
        covered: list[set[str]] = []  # neurons already in a finer rotation family
        for transform in _transforms(transforms, angles):
            group = group_map(ctx, layers, transform, threshold=threshold, margin=margin, use_weights=use_weights)
            if group is None:
                continue
            found = family_motifs(group, include_invariant)
            if transform.name == "rotate":
                found = [m for m in found if not any(set(m.members) <= c for c in covered)]
                covered.extend(set(m.members) for m in found if len(m.members) > 2)
            motifs.extend(found)
    return motifs


def _transforms(transforms, angles) -> list[Transform]:
    from circuits.motifs.transforms import parse

    if transforms is None:
        return default_transforms(angles)
    out = []
    for t in transforms:
        if isinstance(t, Transform):
            out.append(t)
        elif t == "rotate":
            out.extend(Rotate(float(a)) for a in sorted(angles))
        else:
            out.append(parse(t))
    return out

