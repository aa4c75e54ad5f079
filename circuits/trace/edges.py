"""Edge attribution on data, and its causal check by ablation (docs/neuron-graph.md, "Attribution").

attribution[k, c] = mean over images of  sum over positions of  act_S[c] * d(sum of T:k) / d act_S[c].

Both need a forward pass for the source's values and the path's off-path inputs; it runs only the nodes
they need and stops there (``node_values(keep=...)``). The path from S to T is then evaluated on the real
model: nonlinearities and max pooling as they are (max pooling is read as average pooling for *weights*
only).

Two routes, the same numbers:

- **kernel** (taken when it applies): the path from S to T's pre-activation is linear and T's
  nonlinearity is elementwise, ``T_k = sigma(z_k)``, ``z_k = sum_c K_kc * S_c + (terms without S)``. Then
  ``d(sum T_k)/dS_c = K_kc^T * sigma'(z_k)`` and

      attr[k, c] = mean_N sum_pos S_c . (K_kc^T * sigma'(z_k)) = mean_N sum_d K[k, c, d] . corr(S_c, sigma'(z_k))[d]

  i.e. the kernels (``compute_kernels``, expanded=True: exact for a linear path) times the weight gradient
  of a convolution with those kernels: one backward for every edge, exact. The kernels' geometry
  (origin, stride) is checked against the real path on a probe before use; on any doubt, the batched route.
- **batched** (any path): all target channels from one batched backward per chunk (``is_grads_batched``),
  a constant number of forward/backward passes, not one per edge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from circuits import arguments
from circuits.errors import UnsupportedOpError, UsageError
from circuits.graph import ops
from circuits.graph.paths import make_path_function, path_inputs, path_nodes
from circuits.graph.run import check_data, node_values
from circuits.trace.kernels import KernelSet, compute_kernels
from circuits.trace.result import Attribution

CHUNK_ELEMENTS = 2**25
ROUTES = ("auto", "kernel", "batched")


# --------------------------------------------------------------------------------------------------------
# The real path on data


def _real_path(graph, s_node: str, t_node: str, held=()):
    """(nodes the path needs from a forward pass, factory ``context -> f(source value) -> t_node value``).

    The path is evaluated on the model's own ops, max pooling included as max pooling; nodes off the path,
    and the ``held`` nodes it does not run through, take their values from ``context``.
    """
    needs = path_inputs(graph, [s_node], t_node, held)
    if not any(n.name == t_node for n in path_nodes(graph, [s_node], t_node, held)):
        raise UnsupportedOpError(f"node '{t_node}' does not depend on '{s_node}': there is no path")

    def make(context: dict):
        return make_path_function(graph, [s_node], t_node, context=context, held=held)

    return needs, make


def held_sources(graph, source: str, target: str, direct: bool) -> tuple[str, ...]:
    """With ``direct``, the nodes of ``target``'s other direct sources, which the path from ``source`` then
    does not run through: the edge is the direct one, and what ``source`` does to ``target`` by way of
    another of its inputs counts on that input's edge (as a direct weight holds the other sources fixed)."""
    if not direct:
        return ()
    t_layer = graph.layer(target)
    if source not in t_layer.sources:
        raise UsageError(
            f"'{source}' is not a direct source of '{target}' (its direct sources: "
            f"{', '.join(t_layer.sources) or 'none'}); a direct attribution needs one, direct=False gives the "
            "total effect of any earlier layer"
        )  # fmt: skip
    return tuple(graph.layers[other].node for other in t_layer.sources if other != source)


def path_on_data(graph, source: str, target: str, x: torch.Tensor, direct: bool = False):
    """(source layer, target layer, source values on ``x``, f(source values) -> target's activation).

    One forward pass up to the last node the path needs; the rest of the model is not run. With ``direct``
    the target's other direct sources keep their values (:func:`held_sources`).
    """
    s_layer, t_layer = graph.layer(source), graph.layer(target)
    needs, make = _real_path(graph, s_layer.node, t_layer.node, held_sources(graph, s_layer.name, t_layer.name, direct))
    context = node_values(graph, x, keep=needs | {s_layer.node})
    return s_layer, t_layer, context[s_layer.node], make(context)


# --------------------------------------------------------------------------------------------------------
# Attribution


def attribute(
    graph, source: str, target: str, data: torch.Tensor, batch_size: int = 64, route: str = "auto",
    direct: bool = False,
) -> Attribution:
    """Attribution of every edge ``source:c -> target:k`` on ``data`` (N images).

    route: "auto" takes the one-backward kernel route where it is exact (see the module docstring) and the
    batched route elsewhere; "kernel" insists on the kernel route (UsageError where it does not apply);
    "batched" always takes the batched route. ``result.route`` says which was taken.
    direct: hold ``target``'s other direct sources at their values (:func:`held_sources`): the edges of the
    neuron graph, as a circuit has them. Without it, the total effect, through every path.
    """
    if arguments.text(route, "route") not in ROUTES:
        raise UsageError(f"unknown attribution route '{route}': use one of {', '.join(ROUTES)}")
    data = check_data(graph, data)
    s_layer, t_layer = graph.layer(source), graph.layer(target)
    held = held_sources(graph, s_layer.name, t_layer.name, direct)
    total = None
    taken = "batched"
    if route != "batched":
        kernel_set, reason = _kernel_route(graph, s_layer, t_layer, held)
        if kernel_set is None and route == "kernel":
            raise UsageError(f"the kernel route does not apply to {source} -> {target}: {reason}")
        if kernel_set is not None:
            total = _attribute_kernels(graph, s_layer, t_layer, kernel_set, data, batch_size)
            taken = "kernel"
    if total is None:
        needs, make = _real_path(graph, s_layer.node, t_layer.node, held)
        for first in range(0, len(data), batch_size):
            context = node_values(graph, data[first : first + batch_size], keep=needs | {s_layer.node})
            part = _attribute_batch(make(context), context[s_layer.node], t_layer.channels)
            total = part if total is None else total + part
    result = Attribution(total / len(data), s_layer.name, t_layer.name, len(data))
    result.route, result.direct = taken, direct
    return result


def kernel_route_applies(graph, source: str, target: str, direct: bool = False) -> bool:
    """Whether ``attribute(route="auto")`` takes the one-backward kernel route for this layer pair."""
    s_layer, t_layer = graph.layer(source), graph.layer(target)
    return _kernel_route(graph, s_layer, t_layer, held_sources(graph, s_layer.name, t_layer.name, direct))[0] is not None


def _attribute_batch(fn, s_act: torch.Tensor, n_targets: int) -> torch.Tensor:
    s = s_act.clone().requires_grad_(True)
    out = fn(s)
    summed = out.flatten(2).sum(-1) if out.dim() > 2 else out  # [N, C_T]
    per_target = s.numel()
    chunk = max(1, min(n_targets, CHUNK_ELEMENTS // max(per_target, 1)))
    rows = []
    for first in range(0, n_targets, chunk):
        ks = torch.arange(first, min(first + chunk, n_targets))
        cotangents = summed.new_zeros(len(ks), *summed.shape)
        cotangents[torch.arange(len(ks)), :, ks] = 1.0
        (grads,) = torch.autograd.grad(summed, s, cotangents, is_grads_batched=True, retain_graph=True)
        contrib = grads * s.detach().unsqueeze(0)  # [k, N, C_S, *spatial]
        contrib = contrib.flatten(3).sum(-1) if contrib.dim() > 3 else contrib
        rows.append(contrib.sum(1))
    return torch.cat(rows).detach()


# --------------------------------------------------------------------------------------------------------
# The kernel route


def _kernel_route(graph, s_layer, t_layer, held=()) -> tuple[KernelSet | None, str]:
    """The kernels of the linear map S -> T's pre-activation, checked on a probe, or (None, why not).

    With ``held`` nodes (a direct attribution) the map stops at them and the kernels are the direct
    weights; otherwise every path counts and the kernels are the expanded weights."""
    modules = graph.modules
    if t_layer.preact is None or t_layer.kind not in ("activation", "output"):
        return None, f"'{t_layer.name}' is a {t_layer.kind} layer, not a nonlinearity of a pre-activation"
    t_node = graph.nodes[t_layer.node]
    if t_layer.node != t_layer.preact:
        t_family = ops.family(t_node, modules)
        if t_family.kind != ops.NONLINEAR or t_family.marks_output:
            return None, f"'{t_layer.name}' ({t_layer.nonlinearity}) is not an elementwise nonlinearity"
        if [a.name for a in t_node.all_input_nodes if a.op != "get_attr"] != [t_layer.preact]:
            return None, f"'{t_layer.name}' reads more than its pre-activation"
    steps = path_nodes(graph, [s_layer.node], t_layer.preact, held)
    if t_layer.preact != s_layer.node and not any(n.name == t_layer.preact for n in steps):
        return None, "no path"
    on_path = {n.name for n in steps} | {s_layer.node}
    for n in steps:
        family = ops.family(n, modules)
        if family.kind in (ops.NONLINEAR, ops.MAXPOOL, ops.UNKNOWN) or family.gates(n, on_path):
            return None, f"the path passes '{n.name}' ({ops.op_name(n, modules)}), which is not linear"
    try:
        (kernel_set,) = compute_kernels(graph, [s_layer.name], t_layer.name, expanded=not held)
    except (UnsupportedOpError, UsageError, RuntimeError, ValueError) as e:
        return None, f"no kernels for the path ({e})"
    if kernel_set.position is not None and (kernel_set.stride is None or len(kernel_set.position) != 2):
        return None, "the kernels' stride is unknown (or the map is not 2-D)"
    if not _geometry_checks(graph, s_layer, t_layer, kernel_set, held):
        return None, "the kernels do not reproduce the path on a probe (a border effect or a clipped field)"
    return kernel_set, ""


def _apply(kernel_set: KernelSet, s: torch.Tensor) -> torch.Tensor:
    """The source's contribution to the pre-activation, through the kernels (the route's own geometry)."""
    kernels = kernel_set.kernels.to(s.dtype)
    if kernel_set.position is None:
        return torch.einsum("kcw,ncw->nk", kernels.flatten(2), _dense(s))
    return F.conv2d(_aligned(s, kernel_set), kernels, stride=kernel_set.stride)


def _geometry_checks(graph, s_layer, t_layer, kernel_set: KernelSet, held=()) -> bool:
    """The kernels, applied as the route applies them, equal the real linear path on a random probe."""
    probe = torch.rand(1, *s_layer.shape, generator=torch.Generator().manual_seed(0), dtype=graph.dtype)
    fn = make_path_function(graph, [s_layer.node], t_layer.preact, held=held)  # other inputs held at zero
    with torch.no_grad():
        both = fn(torch.cat([probe, torch.zeros_like(probe)]))
        reference = both[:1] - both[1:]  # the constant terms (biases) cancel
        try:
            ours = _apply(kernel_set, probe)
        except RuntimeError:
            return False
    if ours.shape != reference.shape:
        return False
    scale = float(reference.abs().max()) or 1.0
    return bool(torch.allclose(ours, reference, rtol=1e-4, atol=1e-5 * scale))


def _attribute_kernels(graph, s_layer, t_layer, kernel_set: KernelSet, data, batch_size) -> torch.Tensor:
    """Sum over ``data`` of attr[k, c]: one forward to T's pre-activation and one weight gradient per batch."""
    kernels = kernel_set.kernels.to(graph.dtype)
    slope = None if t_layer.node == t_layer.preact else make_path_function(graph, [t_layer.preact], t_layer.node)
    total = None
    for first in range(0, len(data), batch_size):
        values = node_values(graph, data[first : first + batch_size], keep={s_layer.node, t_layer.preact})
        s, z = values[s_layer.node], values[t_layer.preact]
        g = _derivative(slope, z)  # sigma'(z): d(sum of T)/dz, elementwise
        with torch.no_grad():
            if kernel_set.position is None:  # dense target: attr = sum_N g_k sum_w K[k, c, w] S_c[w]
                part = torch.einsum("nk,kcw,ncw->kc", g.flatten(1), kernels.flatten(2), _dense(s))
            else:
                grad = torch.nn.grad.conv2d_weight(_aligned(s, kernel_set), kernels.shape, g, kernel_set.stride)
                part = (kernels * grad).flatten(2).sum(-1)
        total = part if total is None else total + part
    return total


def _derivative(slope, z: torch.Tensor) -> torch.Tensor:
    if slope is None:  # a linear output layer: T is its pre-activation
        return torch.ones_like(z)
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        out = slope(z.clone())  # a clone: an in-place nonlinearity must not write into the leaf
        (g,) = torch.autograd.grad(out.sum(), z)
    return g


def _dense(s: torch.Tensor) -> torch.Tensor:
    return s.flatten(2) if s.dim() > 2 else s.unsqueeze(-1)


def _aligned(s: torch.Tensor, kernel_set: KernelSet) -> torch.Tensor:
    """Source values padded (or cropped) so that ``conv2d(aligned, kernels, stride)`` gives the target map:
    aligned[..., i, j] = S[..., top + i, left + j] (zero outside S), with (top, left) the kernels' offset."""
    (py, px), (y0, x0), (sy, sx) = kernel_set.position, kernel_set.origin, kernel_set.stride
    kh, kw = kernel_set.kernels.shape[-2:]
    out_h, out_w = kernel_set.target_spatial
    top, left = y0 - py * sy, x0 - px * sx
    need_h, need_w = (out_h - 1) * sy + kh, (out_w - 1) * sx + kw
    h, w = s.shape[-2:]
    pad = (max(-left, 0), max(0, left + need_w - w), max(-top, 0), max(0, top + need_h - h))
    padded = F.pad(s, pad) if any(pad) else s
    r0, c0 = max(top, 0), max(left, 0)
    return padded[..., r0 : r0 + need_h, c0 : c0 + need_w]


# --------------------------------------------------------------------------------------------------------
# Ablation


def ablate(graph, source: str, target: str, data: torch.Tensor, mode: str = "zero", batch_size: int = 64,
           direct: bool = False) -> torch.Tensor:  # fmt: skip
    """effect[k, c] = mean over images of (sum of T:k) - (sum of T:k with S:c ablated to zero or its mean);
    with ``direct``, T's other direct sources keep their values (:func:`held_sources`)."""
    data = check_data(graph, data)
    total = None
    s_mean = None
    if mode == "mean":
        acts = graph.run(data, [source])[source]
        s_mean = acts.transpose(0, 1).flatten(1).mean(1)
    for first in range(0, len(data), batch_size):
        x = data[first : first + batch_size]
        s_layer, t_layer, s_act, fn = path_on_data(graph, source, target, x, direct)
        with torch.no_grad():
            base = _summed(fn(s_act))
            rows = []
            for c in range(s_layer.channels):
                ablated = s_act.clone()
                ablated[:, c] = 0.0 if s_mean is None else s_mean[c]
                rows.append((base - _summed(fn(ablated))).sum(0))
        part = torch.stack(rows, 1)  # [C_T, C_S]
        total = part if total is None else total + part
    return total / len(data)


def _summed(out: torch.Tensor) -> torch.Tensor:
    return out.flatten(2).sum(-1) if out.dim() > 2 else out


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rho between two score tensors (flattened), ties ranked by order."""
    ra = a.flatten().argsort().argsort().double()
    rb = b.flatten().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denominator) if denominator else 0.0


def validate(graph, attribution: Attribution, data: torch.Tensor, mode: str = "zero") -> dict:
    """Ablation check of an attribution: per-target and overall rank correlations."""
    effect = ablate(graph, attribution.source, attribution.target, data, mode,
                    direct=getattr(attribution, "direct", False))  # fmt: skip
    per_target = [rank_correlation(attribution.tensor[k], effect[k]) for k in range(effect.shape[0])]
    report = {
        "mode": mode,
        "rank_correlation": rank_correlation(attribution.tensor, effect),
        "per_target_median": float(torch.tensor(per_target).median()),
        "ablation": effect,
    }
    attribution.validation = report
    return report
