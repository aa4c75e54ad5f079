"""Tracing benchmark: expanded weights and attribution on a GoogLeNet-size network, against baselines.

Run:  python benchmarks/bench_trace.py            (full size, about a minute on 2 cores; writes RESULTS.md)
      python benchmarks/bench_trace.py --quick    (smoke size, under a minute; prints only)

The network is benchmarks/googlenet.py (GoogLeNet v1 layout, torchvision's channel counts, random seeded
weights). Every ratio is measured in the same run, on the same machine, with the same torch threads:

1. Expanded weights ``inception4b -> inception4c.branch2.1`` (the concat of block 4b, through 4c's 1x1
   reduce, to 4c's 3x3 conv; the ReLU between linearised) with ``circuits.trace.weights(expanded=True)``,
   against
   (a) the naive loop: one ``torch.autograd.grad`` per target channel of the linearised path's
       pre-activation at the centre position, on an independently built copy of the path (conv/BN modules
       deep-copied, ReLU dropped, BN in eval). A subset of targets is timed and extrapolated linearly. Two
       variants: a forward and a grad per target, and one shared forward with ``retain_graph``;
   (b) the FLOP lower bound of composing the kernels directly (t*m*s*kh*kw MACs), turned into seconds with
       this machine's measured ``torch.mm`` throughput; the direct composition (one einsum) is also timed.
2. Attribution ``inception4b -> inception4c.branch1`` on N random images with ``circuits.trace.attribution``
   (the path is a 1x1 conv + BN into a ReLU, so it takes the kernel route: one weight-gradient backward for
   every edge), against (a) per-source-channel ablation (``circuits.trace.edges.ablate``: the same forward
   up to the target, then one path forward per source channel; a subset of channels is timed and
   extrapolated, the same code as ``ablate``) and (b) one forward + backward pass of the whole model over
   the same images. The batched route (any path, taken where the kernel route does not apply) is timed
   once on the same pair for reference and checked against the kernel route.

Timing: one torch thread by default, timed by the process's CPU time, so other jobs on the shared 2-core
machine do not count against either side (``--threads 2`` times with the wall clock instead). Each time is the
best of ``--repeats`` runs after a warm-up, ours and its baselines taking turns. RESULTS.md gets the table,
the machine, the date, the command and a profile of the expanded-weights call.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import os
import platform
import pstats
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import torch  # noqa: E402
from googlenet import GoogLeNet, linearised_chain  # noqa: E402

from circuits.graph import build_graph  # noqa: E402
from circuits.trace import weights  # noqa: E402

# circuits.trace.attribution(model, ...) is attribute(build_graph(model), ...): calling attribute on the built
# graph keeps graph building out of the timing.
from circuits.trace.edges import ablate, attribute, path_on_data, rank_correlation  # noqa: E402

_CLOCK = {"clock": time.perf_counter}


def clock() -> float:
    """The benchmark's timer: process CPU time with one torch thread (other jobs on the machine do not
    count against us), wall-clock time with several (CPU time would count threads spinning at barriers)."""
    return _CLOCK["clock"]()


SOURCE, TARGET, TARGET_BLOCK, TARGET_BRANCH = "inception4b", "inception4c.branch2.1", "inception4c", "branch2"
ATTR_SOURCE, ATTR_TARGET = "inception4b", "inception4c.branch1"


# --------------------------------------------------------------------------------------------------------
# Baselines and references (also used by tests/test_benchmarks_smoke.py)


def naive_expanded(chain, source_shape, targets, position, *, shared_forward: bool = False) -> torch.Tensor:
    """The naive loop: one ``autograd.grad`` per target channel. Returns [len(targets), *source_shape].

    ``chain`` maps the source layer to the target's pre-activation with every nonlinearity removed; the row
    for target k is the gradient of ``chain(x)[0, k, *position]``. With ``shared_forward`` the forward runs
    once and each grad retains the graph; otherwise each target gets its own forward, as a per-neuron
    script would do.
    """
    x0 = torch.zeros(1, *source_shape)
    rows = []
    x = y = None
    if shared_forward:
        x = x0.clone().requires_grad_(True)
        y = chain(x)
    for k in targets:
        if not shared_forward:
            x = x0.clone().requires_grad_(True)
            y = chain(x)
        (g,) = torch.autograd.grad(y[(0, k, *position)], x, retain_graph=shared_forward)
        rows.append(g[0])
    return torch.stack(rows)


def paste(kernel_set, source_shape) -> torch.Tensor:
    """A KernelSet's cropped kernels put back on the source map: [targets, *source_shape], zero outside."""
    kernels = kernel_set.kernels
    full = torch.zeros(kernels.shape[0], *source_shape)
    (y0, x0), (kh, kw) = kernel_set.origin, kernels.shape[-2:]
    full[:, :, y0 : y0 + kh, x0 : x0 + kw] = kernels
    return full


def max_relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-30))


def compose_kernels(chain) -> torch.Tensor:
    """Expanded weights of a 1x1 conv+BN followed by a kxk conv+BN, composed directly (the lower bound's op)."""
    conv1, bn1, conv2, bn2 = chain
    s1 = bn1.weight / (bn1.running_var + bn1.eps).sqrt()
    s2 = bn2.weight / (bn2.running_var + bn2.eps).sqrt()
    w1 = conv1.weight[:, :, 0, 0] * s1[:, None]  # [m, s]
    w2 = conv2.weight * s2[:, None, None, None]  # [t, m, kh, kw]
    return torch.einsum("tmyx,ms->tsyx", w2, w1)


def composition_macs(chain) -> int:
    """MACs of composing W1 [m, s, 1, 1] with W2 [t, m, kh, kw]: t*m*s*kh*kw (BN scales are negligible)."""
    conv1, _, conv2, _ = chain
    assert conv1.kernel_size == (1, 1), "the lower bound here is for a 1x1 conv followed by a kxk conv"
    t, m, kh, kw = conv2.weight.shape
    return t * m * conv1.in_channels * kh * kw


def ablation_subset(graph, source, target, data, channels):
    """What ``circuits.trace.edges.ablate`` does (zero ablation, one batch), for some source channels.

    Returns (setup seconds, seconds per channel, effect [C_T, len(channels)]). Setup is the forward pass
    up to the target (``path_on_data``, as ``ablate`` runs it) and the base output; each channel costs one
    forward of the path.
    """
    start = clock()
    _, _, s_act, fn = path_on_data(graph, source, target, data)
    with torch.no_grad():
        base = fn(s_act).flatten(2).sum(-1)
        setup = clock() - start
        start = clock()
        rows = []
        for c in channels:
            ablated = s_act.clone()
            ablated[:, c] = 0.0
            rows.append((base - fn(ablated).flatten(2).sum(-1)).sum(0))
    per_channel = (clock() - start) / len(channels)
    return setup, per_channel, torch.stack(rows, 1) / len(data)


# --------------------------------------------------------------------------------------------------------
# Timing


def best_of(fn, repeats: int, warmup: int = 1):
    """(best seconds, last result) over ``repeats`` calls after ``warmup`` untimed ones."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = clock()
        result = fn()
        times.append(clock() - start)
    return min(times), result


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> tuple[dict, dict]:
    """Best seconds and last result per name, the functions taking turns (ABCABC...) after ``warmup`` rounds.

    Taking turns spreads the other jobs on a shared machine evenly over ours and the baselines.
    """
    best, results = dict.fromkeys(fns, float("inf")), {}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            start = clock()
            results[name] = fn()
            if round_ >= warmup:
                best[name] = min(best[name], clock() - start)
    return best, results


def matmul_flops(n: int, repeats: int) -> float:
    """This machine's fp32 matmul throughput (FLOP/s), best of ``repeats`` n x n x n products."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    seconds, _ = best_of(lambda: torch.mm(a, b), repeats)
    return 2 * n**3 / seconds


def machine(threads: int) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "torch": torch.__version__,
            "threads": threads, "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}"}  # fmt: skip


def git_state(parts=("trace", "graph")) -> str:
    """The commit, and which files of the timed packages (``circuits/PART/``) differ from it."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.rstrip()  # not strip(): porcelain lines start with a space

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "../circuits").splitlines()]
    dirty = [path for path in dirty if any(f"/{part}/" in path for part in parts)]
    return commit + (f" with {', '.join(dirty)} modified in the working tree" if dirty else "")


# --------------------------------------------------------------------------------------------------------
# The benchmarks


def bench_expanded(model, graph, args, flops: float, mm_n: int) -> dict:
    t_layer, s_layer = graph.layer(TARGET), graph.layer(SOURCE)
    n_targets = t_layer.channels

    chain = linearised_chain(*getattr(getattr(model, TARGET_BLOCK), TARGET_BRANCH))
    position = tuple(d // 2 for d in t_layer.spatial)
    count = n_targets if args.naive_targets <= 0 else min(args.naive_targets, n_targets)
    subset = list(range(count))
    scale = n_targets / len(subset)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(mm_n, mm_n, generator=g), torch.randn(mm_n, mm_n, generator=g)
    best, out = interleaved(
        {
            "ours": lambda: weights(graph, SOURCE, TARGET, expanded=True, use_cache=False),
            "naive": lambda: naive_expanded(chain, s_layer.shape, subset, position),
            "shared": lambda: naive_expanded(chain, s_layer.shape, subset, position, shared_forward=True),
            "compose": lambda: compose_kernels(chain),
            "matmul": lambda: torch.mm(a, b),
        },
        args.repeats,
    )
    ours_s, naive_s, shared_s, compose_s = best["ours"], best["naive"], best["shared"], best["compose"]
    (kernel_set,) = out["ours"].kernel_sets
    assert tuple(kernel_set.position) == position, (kernel_set.position, position)
    ours_full = paste(kernel_set, s_layer.shape)[subset]
    error = max(max_relative_error(ours_full, out["naive"]), max_relative_error(ours_full, out["shared"]))
    macs = composition_macs(chain)
    flops = max(flops, 2 * mm_n**3 / best["matmul"])  # the fastest matmul seen: the smallest bound
    composed = out["compose"]
    compose_error = max_relative_error(kernel_set.kernels, composed)
    return {
        "kernels": tuple(kernel_set.kernels.shape), "source_map": "×".join(map(str, s_layer.spatial)), "ours_s": ours_s, "n_targets": n_targets,
        "subset": len(subset), "naive_s": naive_s * scale, "shared_s": shared_s * scale,
        "naive_per_target_s": naive_s / len(subset), "shared_per_target_s": shared_s / len(subset),
        "max_rel_error": error, "macs": macs, "bound_s": 2 * macs / flops, "compose_s": compose_s,
        "compose_error": compose_error, "flops": flops,
    }  # fmt: skip


def profile_expanded(graph) -> dict:
    """One expanded-weights call under cProfile (circuits functions) and torch.profiler (top aten ops)."""
    profiler = cProfile.Profile()
    profiler.enable()
    weights(graph, SOURCE, TARGET, expanded=True, use_cache=False)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = max(v[3] for v in stats.stats.values())
    ours = []
    for (filename, _line, name), (_, ncalls, _, cumtime, _) in stats.stats.items():
        if os.sep + "circuits" + os.sep in filename and (
            os.sep + "trace" + os.sep in filename or "paths" in filename
        ):
            rel = filename.split(os.sep + "circuits" + os.sep, 1)[1]
            ours.append((cumtime, f"circuits/{rel}:{name}", ncalls))
    ours.sort(reverse=True)

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        weights(graph, SOURCE, TARGET, expanded=True, use_cache=False)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    ops = [(e.key, e.count, e.self_cpu_time_total / 1e6) for e in events[:8]]
    return {"total_s": total, "functions": ours[:10], "ops": ops}


def bench_attribution(model, graph, args) -> dict:
    g = torch.Generator().manual_seed(1)
    data = torch.randn(args.images, *graph.input_shape, generator=g)
    s_layer = graph.layer(ATTR_SOURCE)

    if args.ablate_channels <= 0:  # every channel, with the project's own ablate
        channels = list(range(s_layer.channels))
    else:
        step = max(1, s_layer.channels // args.ablate_channels)
        channels = list(range(0, s_layer.channels, step))[: args.ablate_channels]

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(data).sum().backward()

    def forward_only():
        return path_on_data(graph, ATTR_SOURCE, ATTR_TARGET, data)

    model.requires_grad_(True)
    attribute(graph, ATTR_SOURCE, ATTR_TARGET, data[:1])  # warm-up on one image (the full calls are long)
    forward_backward()
    ours_s = fb_s = ablate_s = setup = per_channel = forward_s = float("inf")
    for _ in range(args.attr_repeats):  # taking turns, as interleaved() does
        start = clock()
        result = attribute(graph, ATTR_SOURCE, ATTR_TARGET, data)
        ours_s = min(ours_s, clock() - start)
        start = clock()
        forward_backward()
        fb_s = min(fb_s, clock() - start)
        start = clock()
        forward_only()
        forward_s = min(forward_s, clock() - start)
        if args.ablate_channels <= 0:
            start = clock()
            effect = ablate(graph, ATTR_SOURCE, ATTR_TARGET, data)
            ablate_s = min(ablate_s, clock() - start)
        else:
            setup_s, channel_s, effect = ablation_subset(graph, ATTR_SOURCE, ATTR_TARGET, data, channels)
            setup, per_channel = min(setup, setup_s), min(per_channel, channel_s)
            ablate_s = setup + per_channel * s_layer.channels
    start = clock()  # the same baseline with channels-last input (the layout attribution's forward uses), once
    model.zero_grad(set_to_none=True)
    model(data.contiguous(memory_format=torch.channels_last)).sum().backward()
    fb_cl_s = clock() - start
    model.zero_grad(set_to_none=True)
    model.requires_grad_(False)
    start = clock()  # the batched route, once: what a path the kernel route cannot take costs
    batched = attribute(graph, ATTR_SOURCE, ATTR_TARGET, data, route="batched")
    batched_s = clock() - start
    if args.ablate_channels <= 0:
        setup = per_channel = None
    rho = rank_correlation(result.tensor[:, channels], effect)
    return {
        "images": args.images, "edges": tuple(result.tensor.shape), "ours_s": ours_s, "ablate_s": ablate_s,
        "ablate_channels": len(channels), "source_channels": s_layer.channels, "ablate_setup_s": setup,
        "ablate_per_channel_s": per_channel, "rank_correlation": rho, "fb_s": fb_s, "route": result.route,
        "forward_s": forward_s, "batched_s": batched_s, "fb_cl_s": fb_cl_s,
        "route_error": max_relative_error(result.tensor, batched.tensor),
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------------
# Report


def _seconds(x: float) -> str:
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}"


def verdict(ratio: float, goal: float, at_least: bool) -> str:
    met = ratio >= goal if at_least else ratio <= goal
    if met:
        return "yes"
    short = goal / ratio if at_least else ratio / goal
    return f"**no** ({short:.1f}× short)"


def table_rows(ex: dict, at: dict) -> list[tuple[str, str, str, str, str, str]]:
    extrap = f"{ex['subset']} of {ex['n_targets']} targets timed, ×{ex['n_targets'] / ex['subset']:g}"
    pair = f"expanded weights {SOURCE} → {TARGET} ({ex['kernels'][0]}×{ex['kernels'][1]} kernels)"
    edges = f"{at['edges'][0]}×{at['edges'][1]} edges, {at['images']} images"
    attr = f"attribution {ATTR_SOURCE} → {ATTR_TARGET} ({edges}, {at['route']} route)"
    if at["ablate_setup_s"] is None:
        abl = f"every one of {at['source_channels']} channels, circuits' ablate"
    else:
        abl = (f"{at['ablate_channels']} of {at['source_channels']} channels timed: setup "
               f"{at['ablate_setup_s']:.2f} s + {at['source_channels']} × {at['ablate_per_channel_s']:.3f} s")  # fmt: skip
    rows = []

    def row(what, ours, base, ratio, label, goal, at_least):
        rows.append((what, _seconds(ours), _seconds(base), f"{ratio:.1f} ({label})",
                     f"{'≥' if at_least else '≤'} {goal:g}" if goal else "—",
                     verdict(ratio, goal, at_least) if goal else "—"))  # fmt: skip

    row(f"{pair} vs naive per-target loop, forward + grad per target ({extrap})",
        ex["ours_s"], ex["naive_s"], ex["naive_s"] / ex["ours_s"], "baseline/ours", 30, True)  # fmt: skip
    row(f"{pair} vs naive loop with one shared forward, retain_graph ({extrap}; a stronger baseline)",
        ex["ours_s"], ex["shared_s"], ex["shared_s"] / ex["ours_s"], "baseline/ours", None, True)  # fmt: skip
    row(f"{pair} vs FLOP lower bound ({ex['macs'] / 1e6:.0f}M MACs at the measured matmul rate)",
        ex["ours_s"], ex["bound_s"], ex["ours_s"] / ex["bound_s"], "ours/bound", 3, False)  # fmt: skip
    row(f"{pair} vs direct kernel composition, measured (one einsum; for reference)",
        ex["ours_s"], ex["compose_s"], ex["ours_s"] / ex["compose_s"], "ours/baseline", None, False)  # fmt: skip
    row(f"{attr} vs per-source-channel ablation ({abl})",
        at["ours_s"], at["ablate_s"], at["ablate_s"] / at["ours_s"], "baseline/ours", 10, True)  # fmt: skip
    row(f"{attr} vs one forward + backward of the whole model on the same images",
        at["ours_s"], at["fb_s"], at["ours_s"] / at["fb_s"], "ours/baseline", 3, False)  # fmt: skip
    row(f"attribution {ATTR_SOURCE} → {ATTR_TARGET} ({edges}), batched route (any path; timed once, for "
        f"reference) vs per-source-channel ablation (as above)",
        at["batched_s"], at["ablate_s"], at["ablate_s"] / at["batched_s"], "baseline/ours", None, True)  # fmt: skip
    return rows


def render(info: dict, ex: dict, at: dict, prof: dict | None, args) -> str:
    m = info["machine"]
    lines = [
        "# Tracing benchmark results",
        "",
        "Generated by `benchmarks/bench_trace.py`; do not edit by hand (rerun it instead).",
        "",
        f"- **Command:** `{info['command']}`",
        f"- **Date:** {info['date']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable, shared with other jobs), "
        f"{m['os']}, Python {m['python']}, torch {m['torch']}, **{m['threads']} torch thread{'s' if m['threads'] > 1 else ''}**",
        f"- **Load average** (1 min) at start {info['load_start']:.1f}, at end {info['load_end']:.1f}; "
        f"measured matmul throughput {info['flops'] / 1e9:.1f} GFLOP/s (fp32 `torch.mm`, n={info['mm_n']}, best "
        "run, timed in turn with the expanded-weights calls)",
        f"- **Code:** commit {info['git']}",
        f"- **Network:** benchmarks/googlenet.py, input {'x'.join(map(str, info['input_shape']))}, "
        f"{info['layers']} neuron layers; `build_graph` took {info['build_s']:.2f} s (not included below)",
        f"- **Timing:** {info['timer']}, best of {args.repeats} runs after a warm-up ({args.attr_repeats} for the attribution "
        f"rows), ours and its baselines taking turns; whole run {info['wall_s']:.0f} s",
        "",
        "| measurement | ours (s) | baseline (s) | ratio | goal | met? |",
        "|---|---:|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(ex, at)]
    lines += [
        "",
        "## Checks (same run)",
        "",
        f"- Expanded weights vs the naive autograd loop on the timed targets: max relative error "
        f"{ex['max_rel_error']:.2e} (kernels pasted back on the {ex['source_map']} source map, zero outside the window).",
        f"- Expanded weights vs direct kernel composition (BN folded, one einsum): max relative error "
        f"{ex['compose_error']:.2e}.",
        f"- Naive loop per target: {ex['naive_per_target_s'] * 1e3:.1f} ms (forward + grad), "
        f"{ex['shared_per_target_s'] * 1e3:.1f} ms (grad only, shared forward).",
        f"- Attribution vs zero ablation on the ablated channels: Spearman rank correlation {at['rank_correlation']:.3f}.",
    ]
    lines += [
        f"- One forward + backward of the model with channels-last input (timed once): {at['fb_cl_s']:.2f} s; "
        f"attribution is {at['ours_s'] / at['fb_cl_s']:.2f}× it (the table's baseline runs NCHW, as the model is given).",
        f"- Attribution, kernel route vs batched route (the general one) on all {at['edges'][0]}×{at['edges'][1]} edges: "
        f"max relative error {at['route_error']:.2e}.",
        f"- The forward pass that attribution and ablation both start with (only the nodes the source and the "
        f"path need, stopping there; `path_on_data`) took {at['forward_s']:.2f} s: "
        f"{at['forward_s'] / at['ours_s']:.0%} of attribution's {at['ours_s']:.2f} s.",
    ]
    if at["ablate_setup_s"] is not None:
        marginal = at["ablate_per_channel_s"] * at["source_channels"]
        lines.append(
            f"- Beyond that shared forward, ablation costs {at['source_channels']} path forwards "
            f"({marginal:.2f} s) and attribution {max(at['ours_s'] - at['forward_s'], 0.0):.3f} s; the "
            f"{at['ablate_s'] / at['ours_s']:.1f}× of the table is bounded by (forward + {marginal:.2f} s) / forward "
            f"= {(at['forward_s'] + marginal) / at['forward_s']:.1f}× however fast attribution's own part gets."
        )
    if prof:
        lines += [
            "",
            "## Where the expanded-weights time goes (one call, profiled)",
            "",
            f"cProfile, cumulative seconds in circuits' trace/path functions (call total {prof['total_s']:.2f} s):",
            "",
            "| function | calls | cumulative (s) |",
            "|---|---:|---:|",
        ]
        lines += [f"| `{name}` | {calls} | {cum:.3f} |" for cum, name, calls in prof["functions"]]
        lines += ["", "torch.profiler, top aten ops by self CPU time:", "", "| op | calls | self CPU (s) |",
                  "|---|---:|---:|"]  # fmt: skip
        lines += [f"| `{key}` | {count} | {sec:.3f} |" for key, count, sec in prof["ops"]]
        looped = [
            f"`{key}` ×{count}"
            for key, count, _ in prof["ops"]
            if count >= ex["n_targets"] and "backward" in key
        ]
        if looped:
            lines += ["", f"Ops run about once per target channel ({ex['n_targets']} targets): {', '.join(looped)} — "
                      "the vmapped backward runs as a per-target loop underneath."]  # fmt: skip
    lines += ["", "## Notes", "", *[f"- {n}" for n in NOTES], ""]
    return "\n".join(lines)


NOTES = [
    "Ratios are what matter. With one torch thread the timer is the process's CPU time, which other jobs on "
    "the shared machine barely move (they still share caches and memory bandwidth; the load average is given "
    "for context); ours and its baselines take turns in one run.",
    "Extrapolated baselines are linear in the count (each naive target or ablated channel does the same "
    "work); the extrapolation is stated in each row.",
    "The naive loop and the composition run on an independently built copy of the path "
    "(`googlenet.linearised_chain`: deep-copied conv/BN modules, ReLU dropped, BN in eval), not on the IR.",
    "The FLOP lower bound counts only the kernel contraction t·m·s·kh·kw; it ignores graph work, the "
    "receptive-field search and memory traffic, so it is a bound, not a target any general engine reaches "
    "exactly.",
    "Attribution's and ablation's forward (`node_values`) runs image batches in channels-last memory order "
    "(faster CPU convolutions); the forward + backward baseline runs the model as given (NCHW).",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke size: 3x96x96 input, 4 images, fewer repeats"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1, timed by CPU time; >1 is timed by wall clock)",
    )
    parser.add_argument(
        "--images", type=int, default=None, help="images for attribution (default 16; quick 4)"
    )
    parser.add_argument(
        "--naive-targets", type=int, default=16, help="targets timed in the naive loop (0 = all)"
    )
    parser.add_argument(
        "--ablate-channels", type=int, default=32, help="source channels ablated (0 = all, via ablate)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per measurement (default 3; quick 1)"
    )
    parser.add_argument(
        "--results", default=None, help="where to write the results (default: RESULTS.md unless --quick)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip profiling the expanded-weights call")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    threads = args.threads
    torch.set_num_threads(threads)
    _CLOCK["clock"] = time.process_time if threads == 1 else time.perf_counter
    info_timer = "process CPU time" if threads == 1 else "wall-clock time"
    input_shape = (3, 96, 96) if args.quick else (3, 224, 224)
    args.images = args.images or (4 if args.quick else 16)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.attr_repeats = 1 if args.quick else 3
    mm_n = 1024 if args.quick else 2048
    results = args.results or (None if args.quick else os.path.join(HERE, "RESULTS.md"))

    info = {"machine": machine(threads), "timer": info_timer, "input_shape": input_shape, "mm_n": mm_n, "load_start": load_start,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "git": git_state(),
            "command": "python benchmarks/bench_trace.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")}  # fmt: skip
    m = info["machine"]
    print(f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), torch {m['torch']}, {threads} threads, "
          f"load {load_start:.1f}")  # fmt: skip
    info["flops"] = matmul_flops(mm_n, 3)
    print(f"matmul throughput: {info['flops'] / 1e9:.1f} GFLOP/s")

    model = GoogLeNet(seed=0, input_shape=input_shape)
    start = clock()
    graph = build_graph(model)
    info["build_s"], info["layers"] = clock() - start, len(graph.layers)
    print(
        f"GoogLeNet {'x'.join(map(str, input_shape))}: {info['layers']} neuron layers, build_graph {info['build_s']:.2f} s"
    )

    ex = bench_expanded(model, graph, args, info["flops"], mm_n)
    info["flops"] = ex["flops"]
    print(f"expanded weights {SOURCE} -> {TARGET} {ex['kernels']}: ours {ex['ours_s']:.3f} s; naive loop "
          f"{ex['naive_s']:.2f} s ({ex['naive_s'] / ex['ours_s']:.1f}x), shared-forward loop {ex['shared_s']:.2f} s "
          f"({ex['shared_s'] / ex['ours_s']:.1f}x) [{ex['subset']} of {ex['n_targets']} targets timed]; lower bound "
          f"{ex['bound_s'] * 1e3:.1f} ms (ours {ex['ours_s'] / ex['bound_s']:.0f}x it); einsum composition "
          f"{ex['compose_s'] * 1e3:.1f} ms; max rel error {ex['max_rel_error']:.1e} (naive), "
          f"{ex['compose_error']:.1e} (composition)")  # fmt: skip
    prof = None if (args.quick or args.no_profile) else profile_expanded(graph)
    if prof:
        print(
            "profile: "
            + ", ".join(f"{name.rsplit(':', 1)[1]} {cum:.2f} s" for cum, name, _ in prof["functions"][:5])
        )

    at = bench_attribution(model, graph, args)
    print(f"attribution {ATTR_SOURCE} -> {ATTR_TARGET} on {at['images']} images ({at['route']} route): ours "
          f"{at['ours_s']:.2f} s (its forward {at['forward_s']:.2f} s; batched route {at['batched_s']:.2f} s, "
          f"rel. difference {at['route_error']:.1e}); "
          f"ablation {at['ablate_s']:.2f} s ({at['ablate_s'] / at['ours_s']:.1f}x, {at['ablate_channels']} of "
          f"{at['source_channels']} channels timed); forward+backward {at['fb_s']:.2f} s (ours "
          f"{at['ours_s'] / at['fb_s']:.2f}x it); rank correlation with ablation {at['rank_correlation']:.3f}")  # fmt: skip

    info["load_end"], info["wall_s"] = os.getloadavg()[0], time.perf_counter() - started
    print()
    for r in table_rows(ex, at):
        print(f"  {r[3]:>26}  goal {r[4]:>5}  met: {r[5]:<18} {r[0]}")
    print(f"total {info['wall_s']:.0f} s")
    if results:
        with open(results, "w") as f:
            f.write(render(info, ex, at, prof, args))
        print(f"wrote {os.path.relpath(results)}")
    return info, ex, at


if __name__ == "__main__":
    main()
