"""Feature visualisation benchmark: every channel of one layer in one batched call, against one channel at a time.

Run:  python benchmarks/bench_featvis.py            (full: 3x128x128, 48 steps, all 144 channels of
                                                      features.4.conv.0; about 10 minutes on 2 cores;
                                                      rewrites RESULTS_featvis.md)
      python benchmarks/bench_featvis.py --quick    (smoke: 3x64x64, 4 steps, 16 channels; under a minute;
                                                      prints only)
      python benchmarks/bench_featvis.py --device cuda --batch-sizes default,16 --results RESULTS_featvis_cuda.md
                                                     (the same on a GPU: wall-clock time, synchronised;
                                                      peak GPU memory; no CPU step breakdown)

The network is benchmarks/mobilenetv2.py (torchvision's MobileNetV2 layout and names, random seeded weights)
at a 3x128x128 input; the layer is ``features.4.conv.0``, block 4's expand ReLU6 (144 channels on a 32x32
map). Issue #20's acceptance, measured in the same run on the same machine:

1. **batched**: one call ``circuits.featvis.visualise(model, layer, steps=S)``, one picture per channel of
   the layer, optimised ``batch_size`` images at a time: visualise's default (16 on the CPU) and
   ``batch_size=256``, which holds all 144 in a single batch, against
2. **one neuron at a time, the Lucent way**: ``for c in channels: visualise(model, layer, [c], steps=S)``.
   Each call builds the graph again from the model, as a per-neuron script does. A subset of channels
   (``--neurons``, spread over the layer) is timed and the cost extrapolated per neuron, as bench_trace.py
   does for its naive loop. The same loop on a graph built once (``visualise(graph, ...)``) is timed too: a
   stronger baseline with only the steps left.

Reported: seconds per neuron on each side, their ratio (goal: batched >= 10x the throughput), the peak
resident memory of each side (``/proc/self/statm`` sampled every 5 ms by bench_motifs_mobilenetv2's
``PeakMemory``; freed memory is handed back to the OS with ``malloc_trim`` between sides), and, on the side,
the agreement of the answers: the batched picture of a timed channel against that channel's picture made
alone (visualise is meant to be batch-independent). ``--batch-sizes default,256`` (the default) chooses
the ``batch_size`` values timed, ``default`` meaning none given. The full run ends with a step-by-step cost breakdown at batch 1, 16 and the
whole layer (where the time goes). No progress bar is shown: circuits.progress draws one only when stderr
is a terminal (there is no switch to turn it off), so run it with stderr redirected for clean output.

On a GPU (``--device cuda``) every side runs there (``visualise(..., device="cuda")``), each timed by the
wall clock between two ``torch.cuda.synchronize()`` calls, with the peak GPU memory each side allocated
(``torch.cuda.max_memory_allocated``) beside the resident memory; the CPU-only parts (the step breakdown by CPU
time, the linearised path's batch-dependence checks) are skipped.

Timing: one torch thread, timed by the process's CPU time (user + system), so other jobs on the shared
2-core machine do not count against either side (``--threads 2`` times with the wall clock instead). Seeds
are fixed (the model's weights, every picture's start and transforms). Each side is timed once: a
side is minutes long, and one untimed one-step call beforehand loads what the first call would pay alone
(the colour basis, the convolution kernels).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import gc
import os
import resource
import sys
import time
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import bench_trace  # noqa: E402
import torch  # noqa: E402
from bench_motifs_mobilenetv2 import PeakMemory, rss  # noqa: E402
from bench_trace import _CLOCK, clock, machine  # noqa: E402
from mobilenetv2 import MobileNetV2  # noqa: E402

from circuits.featvis import Channel, Fourier, robust, visualise  # noqa: E402
from circuits.featvis.optimise import CPU_BATCH, GPU_BATCH, WARMUP, _linearised  # noqa: E402
from circuits.graph import build_graph  # noqa: E402
from circuits.trace.kernels import receptive_field  # noqa: E402

LAYER = "features.4.conv.0"
GB = 1e9
GOAL = 10.0


def make_model(size: int) -> MobileNetV2:
    """The MobileNetV2 twin (seed 0) at a ``3 x size x size`` input (build_graph reads ``input_shape``)."""
    model = MobileNetV2(seed=0)
    model.input_shape = (3, size, size)
    return model


def spread(n: int, k: int) -> list[int]:
    """``k`` channels spread evenly over ``range(n)`` (all of them for ``k <= 0`` or ``k >= n``)."""
    if k <= 0 or k >= n:
        return list(range(n))
    step = n // k
    return list(range(0, step * k, step))


def give_back_memory() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``), so each side's peak starts clean."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


DEVICE = {"device": torch.device("cpu")}  # where every side runs (--device)


def on_gpu() -> bool:
    return DEVICE["device"].type == "cuda"


def synchronise() -> None:
    """Wait for the GPU's queued work, so the clock reads finished work (nothing on the CPU)."""
    if on_gpu():
        torch.cuda.synchronize(DEVICE["device"])


def measured(fn) -> dict:
    """Run ``fn`` once: CPU or wall seconds (the benchmark's clock), wall seconds, peak RSS, RSS at start, and
    on a GPU the peak GPU memory the side allocated."""
    give_back_memory()
    if on_gpu():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(DEVICE["device"])
    synchronise()
    wall = time.perf_counter()
    with PeakMemory() as memory:
        start = clock()
        result = fn()
        synchronise()
        seconds = clock() - start
    gpu = torch.cuda.max_memory_allocated(DEVICE["device"]) if on_gpu() else None
    return {"s": seconds, "wall_s": time.perf_counter() - wall, "peak": memory.peak, "start_rss": memory.start,
            "gpu_peak": gpu, "result": result}  # fmt: skip


def one_at_a_time(model, channels, steps: int) -> list:
    """The Lucent way: one ``visualise`` call, one optimisation, per channel."""
    return [visualise(model, LAYER, [c], steps=steps, device=DEVICE["device"]) for c in channels]


# --------------------------------------------------------------------------------------------------------
# Where the time goes: one optimisation step taken apart, as circuits/featvis/optimise.py:_optimise runs it


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _per_image(fn, images: int, repeats: int = 2, min_s: float = 0.5) -> tuple[float, float]:
    """(CPU ms per image, share of it in the kernel: page faults) of ``fn``, after one untimed call: the best
    of ``repeats`` measurements, each calling ``fn`` until ``min_s`` CPU seconds have passed."""
    fn()
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        u0, s0 = _cpu()
        calls = 0
        while True:
            fn()
            calls += 1
            u1, s1 = _cpu()
            total = (u1 - u0) + (s1 - s0)
            if total >= min_s:
                break
        if total / calls < best[0]:
            best = (total / calls, (s1 - s0) / total)
    return best[0] / images * 1e3, best[1]


def step_parts(graph, linear, channels, batch: int, size: int) -> dict:
    """The parts of one step at ``batch`` images, as functions to time (the whole steps do what _optimise does)."""
    shape, param, objective = tuple(graph.input_shape), Fourier(), Channel()
    own = torch.tensor([channels[i % len(channels)] for i in range(batch)])
    g = torch.Generator().manual_seed(0)
    params = [torch.stack(p).requires_grad_() for p in zip(*[param.init(shape, g) for _ in range(batch)])]
    optimiser = torch.optim.Adam(params, lr=0.05)
    leaf = torch.rand(batch, *shape, generator=g).requires_grad_()
    transforms_g = torch.Generator().manual_seed(0)

    def image():
        return robust.apply(robust.DEFAULT, param.image(params, shape), transforms_g, size)

    def network(x):
        return graph.run(x, [LAYER], grad=True, preact=True)[LAYER]

    def climb(path, x):
        (-objective(path(x), own).sum()).backward()

    def whole_step(path):
        optimiser.zero_grad()
        climb(path, image())
        optimiser.step()

    return {
        "image: Fourier parameters -> transformed image, forward + backward": lambda: image().mean().backward(),
        "linearised path (warm-up steps), forward + backward": lambda: climb(linear, leaf),
        "the same, channels-last input (for comparison)": lambda: climb(
            linear, leaf.contiguous(memory_format=torch.channels_last)),
        "network (graph.run, channels-last), forward + backward": lambda: climb(network, leaf),
        "whole warm-up step (image, linearised path, Adam)": lambda: whole_step(linear),
        "whole network step (image, network, Adam)": lambda: whole_step(network),
    }  # fmt: skip


def step_costs(model, graph, channels, batch_sizes, repeats: int = 2) -> dict:
    """CPU ms per image of each part of one step, at each batch size, plus what a call pays before its steps."""
    start = clock()
    build_graph(model)
    build_s = clock() - start
    start = clock()
    lo, hi, _ = receptive_field(graph, LAYER)
    linear = _linearised(graph, LAYER)
    field_s = clock() - start
    size = max(b - a for a, b in zip(lo, hi))
    rows = {}
    for batch in batch_sizes:
        parts = step_parts(graph, linear, channels, batch, size)
        rows[batch] = {name: _per_image(fn, batch, repeats) for name, fn in parts.items()}
        print(f"  batch {batch}: " + ", ".join(f"{ms:.1f}" for ms, _ in rows[batch].values()), flush=True)
    return {"build_s": build_s, "field_s": field_s, "rows": rows}


# --------------------------------------------------------------------------------------------------------
# Report


def verdict(ratio: float) -> str:
    return "yes" if ratio >= GOAL else f"**no** ({GOAL / ratio:.1f}× short)"


def table(info, sides) -> list[str]:
    gpu = any(side["gpu_peak"] is not None for side in sides)
    lines = [
        "| side | call | channels timed | seconds per neuron | whole layer (s) | wall, timed part (s) | peak RSS (GB) "
        "| peak over start (GB) |" + (" peak GPU memory (GB) |" if gpu else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if gpu else ""),
    ]
    for side in sides:
        lines.append(f"| {side['name']} | `{side['call']}` | {side['timed']} of {info['channels']} | "
                     f"{side['per_neuron']:.4f} | {side['per_neuron'] * info['channels']:.1f}"
                     f"{'' if side['timed'] == info['channels'] else ' (extrapolated)'} | {side['wall_s']:.1f} | "
                     f"{side['peak'] / GB:.2f} | {(side['peak'] - side['start_rss']) / GB:.2f} |"
                     + (f" {side['gpu_peak'] / GB:.2f} |" if gpu else ""))  # fmt: skip
    return lines


def ratio_rows(sides) -> list[str]:
    baselines = [s for s in sides if not s["batched"]]
    lines = ["| batched | against | ratio (baseline s per neuron / batched) | goal | met? |",
             "|---|---|---:|---:|---|"]  # fmt: skip
    for ours in (s for s in sides if s["batched"]):
        for base in baselines:
            ratio = base["per_neuron"] / ours["per_neuron"]
            primary = base is baselines[0]
            lines.append(f"| {ours['name']} | {base['name']} | {ratio:.2f} | {'≥ 10' if primary else '—'} | "
                         f"{verdict(ratio) if primary else '—'} |")  # fmt: skip
    return lines


def render(info, sides, checks, prof) -> str:
    m = info["machine"]
    lines = [
        "# Feature visualisation benchmark results",
        "",
        "Generated by `benchmarks/bench_featvis.py`; do not edit by hand (rerun it instead).",
        "",
        f"- **Command:** `{info['command']}`",
        f"- **Date:** {info['date']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable, shared with other jobs), "
        f"{m['os']}, Python {m['python']}, torch {m['torch']}, **{m['threads']} torch thread"
        f"{'s' if m['threads'] > 1 else ''}**" + (f"; **GPU: {info['gpu']}** (every side runs there)" if info.get("gpu") else ""),
        f"- **Load average** (1 min) at start {info['load_start']:.1f}, at end {info['load_end']:.1f}",
        f"- **Code:** commit {info['git']}",
        f"- **Network:** benchmarks/mobilenetv2.py (random seeded weights), input "
        f"{'x'.join(map(str, info['input_shape']))}; layer `{LAYER}` ({info['channels']} channels, "
        f"{info['map']} map)",
        f"- **Settings:** `steps={info['steps']}` (of which the first {info['warmup_steps']} climb the linearised "
        f"path: `warmup={WARMUP}`), every other argument visualise's default (Fourier, `Channel()`, lr 0.05, "
        f"the default transforms, seed 0)",
        f"- **Timing:** {info['timer']}, each side timed once after one untimed one-step call (the wall column: "
        f"elapsed time, for reference); whole run "
        f"{info['wall_s'] / 60:.1f} min",
        "",
        *table(info, sides),
        "",
        *ratio_rows(sides),
        "",
        "## Checks (same run)",
        "",
        *[f"- {c}" for c in checks],
    ]
    if prof:
        lines += profile_lines(info, prof)
    notes = ([GPU_NOTE] if info.get("gpu") else []) + NOTES[bool(info.get("gpu")):]
    lines += ["", "## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def profile_lines(info, prof) -> list[str]:
    batches = list(prof["rows"])
    names = list(prof["rows"][batches[0]])
    head = " | ".join(f"batch {b}" for b in batches)
    lines = [
        "",
        "## Where the time goes (one step taken apart)",
        "",
        f"CPU milliseconds per image for one optimisation step's parts, as `_optimise` runs them, best of 2 "
        f"after one; in brackets the share spent in the kernel (system time: page faults of freshly mapped "
        f"buffers). Each per-neuron call also pays `build_graph` {prof['build_s']:.2f} s and the receptive "
        f"field plus linearised path {prof['field_s']:.2f} s before its first step.",
        "",
        f"| part of a step | {head} |",
        "|---|" + "---:|" * len(batches),
    ]
    for name in names:
        cells = " | ".join(f"{prof['rows'][b][name][0]:.1f} ({prof['rows'][b][name][1]:.0%})" for b in batches)
        lines.append(f"| {name} | {cells} |")
    one = batches[0]
    w = info["warmup_steps"] / info["steps"]

    def mixed(b):
        rows = prof["rows"][b]
        return w * rows[names[4]][0] + (1 - w) * rows[names[5]][0]

    best = min(batches, key=mixed)
    costs = [f"{mixed(b):.1f} ms per image at batch {b}" for b in batches]
    net = ", ".join(f"{prof['rows'][b][names[3]][0]:.1f} ms at batch {b}" for b in batches)
    lines += [
        "",
        f"With the warm-up share of the steps ({w:.0%}), a step costs {', '.join(costs)}. Batching saves the "
        f"per-call setup and, on the steps, at most {mixed(one) / mixed(best):.1f}× (batch {one} against "
        f"batch {best}, the cheapest measured); the network's forward + backward alone costs {net} per image.",
    ]
    return lines


GPU_NOTE = ("Ratios are what matter. On the GPU every side is timed by the wall clock between "
            "`torch.cuda.synchronize()` calls, so the per-step Python and kernel-launch cost counts, as a user pays it. "
            "A GPU's pictures are not bit-reproducible (docs/pictures.md says why), so the checks' pixel differences "
            "above measure run-to-run variation, not batch dependence.")
NOTES = [
    "Ratios are what matter. With one torch thread the timer is the process's CPU time (user + system: page "
    "faults count), which other jobs on the shared machine barely move.",
    "The per-neuron baselines are timed on a subset of the layer's channels spread over it and extrapolated "
    "linearly: every channel's optimisation does the same work.",
    "Peak RSS is of the whole process (the model, the graph and Python included); 'peak over start' is what "
    "the side itself added.",
]


def git_state() -> str:
    return bench_trace.git_state(("featvis", "graph", "motifs", "trace"))


# --------------------------------------------------------------------------------------------------------


def linearised_checks(graph, batch: int = 16) -> list[str]:
    """Two properties of the warm-up path (``_linearised``) against ``graph.run``, measured on ``batch`` images:
    whether an image's output depends on its batch, and whether a call's intermediates outlive it."""
    linear = _linearised(graph, LAYER)
    x = torch.rand(batch, *graph.input_shape, generator=torch.Generator().manual_seed(2))
    last = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        alone = linear(x[-1:])[0]
        scale = float(alone.abs().max())
        nchw = float((linear(x)[-1] - alone).abs().max()) / scale
        cl = float((linear(last)[-1] - linear(last[-1:])[0]).abs().max()) / scale
        run = graph.run(x, [LAYER], preact=True)[LAYER]
        run = float((run[-1] - graph.run(x[-1:], [LAYER], preact=True)[LAYER][0]).abs().max()) / scale
    held = {}
    for name, fn in (("the linearised path", linear), ("`graph.run`", lambda z: graph.run(z, [LAYER], preact=True)[LAYER])):
        gc.collect()
        gc.disable()  # no collection in between: what a call leaves behind until the cyclic collector runs
        try:
            give_back_memory()
            before = rss()
            with torch.no_grad():
                out = fn(x)
            ref = weakref.ref(out)
            del out
            give_back_memory()
            alive, grown = ref() is not None, rss() - before
        finally:
            gc.enable()
            gc.collect()
        give_back_memory()
        held[name] = (alive, grown, ref() is None, rss() - before)
    lines = [f"Batch dependence, one image's layer pre-activation computed in a batch of {batch} against alone "
             f"(max difference over the largest value): the linearised path (the warm-up steps; NCHW input, as "
             f"`_optimise` gives it) {nchw:.1e}; the same path on channels-last input {cl:.1e}; `graph.run` (the "
             f"network steps, channels-last) {run:.1e}."]  # fmt: skip
    for name, (alive, grown, collected, left) in held.items():
        lines.append(f"One call of {name} on {batch} images (no grad), then `del` of its output, with Python's cyclic "
                     f"garbage collector off: the output is {'still alive (held by a reference cycle)' if alive else 'freed'}, "
                     f"{grown / 1e6:.0f} MB more resident ({grown / 1e6 / batch:.1f} MB per image); after "
                     f"`gc.collect()` {'it is freed' if collected else 'it is still alive'}, {max(left, 0) / 1e6:.0f} MB.")  # fmt: skip
    return lines


def max_difference(batched, alone, channels) -> tuple[float, float]:
    """(max |pixel difference|, max relative activation difference) of the timed channels' pictures."""
    pixels = max(float((batched.images[c] - p.images[0]).abs().max()) for c, p in zip(channels, alone))
    acts = max(float((batched.activation[c] - p.activation[0]).abs() / p.activation[0].abs().clamp_min(1e-12))
               for c, p in zip(channels, alone))  # fmt: skip
    return pixels, acts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size: 3x64x64, 4 steps, 16 channels")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, timed by CPU time; >1 is timed by wall clock)")  # fmt: skip
    parser.add_argument("--size", type=int, default=None, help="input height and width (default 128; quick 64)")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default 48; quick 4)")
    parser.add_argument("--channels", type=int, default=None,
                        help="channels in the batched call (0 = every one; default 0; quick 16)")  # fmt: skip
    parser.add_argument("--neurons", type=int, default=None,
                        help="channels timed one at a time (default 8; quick 2)")  # fmt: skip
    parser.add_argument("--batch-sizes", default=None,
                        help="batch_size values for the batched call, 'default' for none given (default "
                        "'default,256': visualise's own, then the whole layer in one batch; quick 'default')")  # fmt: skip
    parser.add_argument("--results", default=None,
                        help="where to write the results (default: RESULTS_featvis.md unless --quick)")  # fmt: skip
    parser.add_argument("--no-profile", action="store_true", help="skip the step-by-step cost breakdown")
    parser.add_argument("--device", default="cpu",
                        help="where every side runs: cpu (default) or cuda[:N], timed by the wall clock")  # fmt: skip
    args = parser.parse_args(argv)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    from circuits.errors import UsageError
    from circuits.graph.run import resolve_device

    try:
        DEVICE["device"] = device = resolve_device(args.device)
    except UsageError as exc:
        parser.error(str(exc))  # one line, exit 2
    _CLOCK["clock"] = time.process_time if args.threads == 1 and not on_gpu() else time.perf_counter
    size = args.size or (64 if args.quick else 128)
    steps = args.steps or (4 if args.quick else 48)
    n_batched = args.channels if args.channels is not None else (16 if args.quick else 0)
    n_alone = args.neurons or (2 if args.quick else 8)
    batch_sizes = [None if b == "default" else int(b)
                   for b in (args.batch_sizes or ("default" if args.quick else "default,256")).split(",")]  # fmt: skip
    results = args.results or (None if args.quick else os.path.join(HERE, "RESULTS_featvis.md"))

    model = make_model(size)
    graph = build_graph(model)
    layer = graph.layer(LAYER)
    channels = list(range(layer.channels)) if n_batched <= 0 else list(range(min(n_batched, layer.channels)))
    alone_channels = [channels[i] for i in spread(len(channels), n_alone)]
    info = {"machine": machine(args.threads), "load_start": load_start, "input_shape": (3, size, size),
            "timer": ("wall-clock time between `torch.cuda.synchronize()` calls" if on_gpu() else
                      "process CPU time (user + system)" if args.threads == 1 else "wall-clock time"),
            "gpu": torch.cuda.get_device_name(device) if on_gpu() else None,
            "steps": steps, "warmup_steps": sum(1 for s in range(steps) if s < WARMUP * steps),
            "channels": len(channels), "map": "×".join(map(str, layer.spatial)), "git": git_state(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["python benchmarks/bench_featvis.py", *(  # a results path as it lands in benchmarks/
                f"benchmarks/{os.path.basename(a)}" if os.path.isabs(a) else a for a in sys.argv[1:])])}  # fmt: skip
    m = info["machine"]
    print(f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), torch {m['torch']}, {args.threads} "
          f"threads, load {load_start:.1f}", flush=True)  # fmt: skip
    print(f"MobileNetV2 3x{size}x{size}, {LAYER}: {len(channels)} of {layer.channels} channels batched, "
          f"{len(alone_channels)} timed one at a time ({alone_channels}), {steps} steps", flush=True)  # fmt: skip
    visualise(model, LAYER, [0], steps=1, device=device)  # untimed: the colour basis, first convolutions
    if on_gpu():  # and a whole batch once: the GPU's kernels for the batched shapes are chosen on first use
        visualise(model, LAYER, None if n_batched <= 0 else channels, steps=1, device=device)

    sides = []

    def side(name, call, fn, batched, timed):
        out = measured(fn)
        out.update(name=name, call=call, batched=batched, timed=timed, per_neuron=out["s"] / timed)
        sides.append(out)
        print(f"{name}: {out['s']:.1f} s for {timed} channels ({out['per_neuron']:.3f} s per neuron; wall "
              f"{out['wall_s']:.1f} s), peak RSS {out['peak'] / GB:.2f} GB "
              f"(+{(out['peak'] - out['start_rss']) / GB:.2f})", flush=True)  # fmt: skip
        return out["result"]

    some = channels if n_batched > 0 else None  # None: every channel, visualise's own default
    alone = side("one at a time (Lucent way)", f"for c in channels: visualise(model, layer, [c], steps={steps})",
                 lambda: one_at_a_time(model, alone_channels, steps), False, len(alone_channels))  # fmt: skip
    alone_graph = side("one at a time, graph built once",
                       f"for c in channels: visualise(graph, layer, [c], steps={steps})",
                       lambda: one_at_a_time(graph, alone_channels, steps), False, len(alone_channels))  # fmt: skip
    batched = {}
    for bs in batch_sizes:
        arg = "" if bs is None else f", batch_size={bs}"
        chans = "" if some is None else f", range({len(channels)})"
        label = (f"default ({GPU_BATCH} on a GPU)" if on_gpu() else f"default ({CPU_BATCH} on the CPU)") if bs is None else str(bs)
        batched[label] = side(f"batched, batch_size {label}",
                           f"visualise(model, layer{chans}, steps={steps}{arg})",
                           lambda bs=bs: visualise(model, LAYER, some, steps=steps, batch_size=bs, device=device), True,
                           len(channels))  # fmt: skip

    checks = []
    for label, pictures in batched.items():
        pixels, acts = max_difference(pictures, alone, alone_channels)
        checks.append(f"Batched (batch_size {label}) against one at a time, on the {len(alone_channels)} timed "
                      f"channels: max |pixel difference| {pixels:.2e} (pixels in [0, 1]), max relative difference "
                      f"of the reached activation {acts:.2e}.")  # fmt: skip
    same = max(float((a.images - b.images).abs().max()) for a, b in zip(alone, alone_graph))
    checks.append(f"One at a time from the model against from a graph built once: max |pixel difference| "
                  f"{same:.2e}.")  # fmt: skip
    start = clock()  # the same comparison without the warm-up on the linearised path
    plain_batch = visualise(graph, LAYER, alone_channels, steps=steps, warmup=0, device=device)
    plain_alone = [visualise(graph, LAYER, [c], steps=steps, warmup=0, device=device) for c in alone_channels]
    pixels, acts = max_difference(plain_batch, plain_alone, range(len(alone_channels)))
    checks.append(f"With `warmup=0` (every step on the real network), the {len(alone_channels)} timed channels in "
                  f"one batch against one at a time: max |pixel difference| {pixels:.2e}, max relative activation "
                  f"difference {acts:.2e} ({clock() - start:.0f} s, not in the table).")  # fmt: skip
    worst = max(max_difference(p, alone, alone_channels)[0] for p in batched.values())
    if pixels < 1e-5 <= worst:
        checks.append(f"So the batched pictures' difference ({worst:.1e}) comes from the warm-up steps alone: the "
                      "network steps are exactly batch-independent here, and Adam's normalised steps turn the warm-up "
                      "path's rounding (next line) into visible pixel differences.")  # fmt: skip
    if not on_gpu():
        checks += linearised_checks(graph)
    for c in checks:
        print(c, flush=True)

    prof = None
    if not (args.quick or args.no_profile or on_gpu()):
        print("step costs (CPU ms per image):", flush=True)
        prof = step_costs(model, graph, alone_channels, sorted({1, 16, len(channels)}))

    info["load_end"], info["wall_s"] = os.getloadavg()[0], time.perf_counter() - started
    print()
    for line in table(info, sides) + [""] + ratio_rows(sides):
        print(line)
    if on_gpu():
        print(f"GPU: {info['gpu']}")
    print(f"total {info['wall_s']:.0f} s, highest RSS {max(rss(), max(s['peak'] for s in sides)) / GB:.2f} GB")
    if results:
        with open(results, "w") as f:
            f.write(render(info, sides, checks, prof))
        print(f"wrote {os.path.relpath(results)}")
    return info, sides, checks, prof


if __name__ == "__main__":
    main()
