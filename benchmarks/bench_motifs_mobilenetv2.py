"""Memory and time of a whole-network motif scan: `circuits motifs --kind union` on a 224-pixel MobileNetV2.

Run:  python benchmarks/bench_motifs_mobilenetv2.py              (every target layer, 3x224x224; ~35 min)
      python benchmarks/bench_motifs_mobilenetv2.py --quick      (3x96x96 input: a smoke run, ~1 min)
      python benchmarks/bench_motifs_mobilenetv2.py --layers features.15.conv.0,features.18

The network is benchmarks/mobilenetv2.py (torchvision's layout and names, random seeded weights). The scan
is the library call behind the command, ``circuits.motifs.unions(ctx, layer)``, run layer after layer on one
context (weights only, as the command runs without --data), so the context's cache carries over from layer
to layer as it does in a real scan. A thread samples the process's resident memory every 5 ms. For each
target layer it reports, measured in the same run:

- **peak RSS** while the layer is scanned, and that peak over the **bytes of the layer's expanded kernels**
  to the input (the array a scan cannot avoid holding: the floor of what it needs);
- **seconds** of the layer's scan (process CPU time, one torch thread), and over the seconds spent in
  tracing its expanded kernels (``trace.weights(expanded=True)``: the floor of what it costs).

Goal (issue #19): every layer under 4 GB peak resident memory. ``--results PATH`` writes the table as
Markdown (default: print only).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from circuits.motifs import Context, unions  # noqa: E402

GB = 1e9
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakMemory:
    """Resident memory sampled every 5 ms while the block runs: ``start``, ``peak`` (bytes)."""

    def __enter__(self):
        self.start = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 3x96x96 input instead of 3x224x224")
    parser.add_argument("--layers", help="comma-separated target layers (default: every one)")
    parser.add_argument("--results", help="write the table to this Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["CIRCUITS_CACHE"] = "0"  # every kernel traced here, none read from the disk cache
    from mobilenetv2 import MobileNetV2

    size = 96 if args.quick else 224
    ctx = Context(MobileNetV2(seed=0), input_shape=(3, size, size))
    traced = {"seconds": 0.0, "bytes": {}}
    plain = ctx.input_kernels

    def timed_kernels(layers):
        start = time.process_time()
        out = plain(layers)
        traced["seconds"] += time.process_time() - start
        traced["bytes"][tuple(layers)] = out[0].numel() * out[0].element_size()
        return out

    ctx.input_kernels = timed_kernels  # the context's own kernels, timed where the scan asks for them
    targets = ctx.targets() if not args.layers else args.layers.split(",")
    rows, total_s, overall = [], 0.0, rss()
    for target in targets:
        traced["seconds"] = 0.0
        with PeakMemory() as memory:
            start = time.process_time()
            found = unions(ctx, layer=target)
            seconds = time.process_time() - start
        kernels = traced["bytes"].get(tuple(ctx.parts(target)), 0)
        rows.append((target, ctx.graph.layer(target).channels, kernels, memory.peak, seconds, traced["seconds"],
                     len(found)))  # fmt: skip
        total_s += seconds
        overall = max(overall, memory.peak)
        print(f"{target:22s} peak {memory.peak / GB:5.2f} GB  {seconds:7.1f} s", file=sys.stderr, flush=True)

    lines = [
        f"MobileNetV2 twin (random weights), 3x{size}x{size}, `unions(ctx, layer)` layer after layer on one "
        f"context; torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, 1 thread, "
        f"{time.strftime('%Y-%m-%d')}",
        "",
        "| target layer | neurons | its kernels (MB) | peak RSS (GB) | peak / kernels | scan (s) | tracing (s) | scan / tracing | unions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, channels, kernels, peak, seconds, trace_s, count in rows:
        ratio = f"{peak / kernels:.1f}" if kernels else ""
        over = f"{seconds / trace_s:.1f}" if trace_s > 0.05 else ""
        lines.append(f"| {name} | {channels} | {kernels / 1e6:.0f} | {peak / GB:.2f} | {ratio} | {seconds:.1f} | "
                     f"{trace_s:.1f} | {over} | {count} |")  # fmt: skip
    worst = max(rows, key=lambda r: r[3])
    lines += ["", f"whole scan: {total_s:.0f} s; highest peak {overall / GB:.2f} GB ({worst[0]}); goal: every layer "
              f"under 4 GB ({'met' if overall < 4 * GB else 'NOT met'})"]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if args.results:
        with open(args.results, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
