"""Where the time of `circuits extract --method attribution` goes, on a 224-pixel MobileNetV2.

Run:  python benchmarks/bench_extract_attribution.py               (64 images, 3x224x224; ~2 min)
      python benchmarks/bench_extract_attribution.py --quick       (8 images, 3x96x96: a smoke run)
      python benchmarks/bench_extract_attribution.py --profile 25  (also the 25 costliest calls, cProfile)

The network is benchmarks/mobilenetv2.py (torchvision's layout and names, random seeded weights), the
neuron ``features.4.conv.0:40`` (an expand ReLU6 behind a residual block), depth 2, top-k 8. Measured in the
same run, process CPU seconds with one torch thread, the disk cache off:

1. ``circuits.extraction.extract(..., method="attribution")``, the library call behind the command;
2. the baseline: the attributions that extraction needs, each layer pair timed alone
   (``trace.attribution(graph, S, T, data, direct=True)``, with the route each takes).

Their ratio is the extraction's overhead over its attributions (goal: near 1). Before issue #19 the first
pair took the batched route (one backward pass per target channel), because the attribution followed every
path from ``features.2.conv.1``, including the one through block 3's ReLU6s; a circuit's edges are direct
edges, so extraction now holds the target's other direct sources and every pair takes the kernel route.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import torch  # noqa: E402
from bench_motifs import cpu  # noqa: E402

from circuits import trace  # noqa: E402
from circuits.data import load_data  # noqa: E402
from circuits.extraction import extract  # noqa: E402
from circuits.graph import build_graph  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 images at 3x96x96")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--neuron", default="features.4.conv.0:40")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest calls")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["CIRCUITS_CACHE"] = "0"
    from mobilenetv2 import MobileNetV2

    size, n = (96, 8) if args.quick else (224, args.images)
    graph = build_graph(MobileNetV2(seed=0), (3, size, size))
    data = load_data(f"noise:{n}", graph.input_shape)

    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    whole, circuit = cpu(lambda: extract(graph, args.neuron, depth=2, top_k=8, method="attribution", data=data))
    if profiler:
        profiler.disable()

    layers = {node.split(":")[0] for node in circuit.nodes}
    pairs = sorted({(u.rsplit(":", 1)[0], v.rsplit(":", 1)[0]) for u, v in circuit.edges})
    pairs = [(s, t) for s, t in pairs if t in layers]
    parts = []
    for target in sorted({t for _, t in pairs}):
        for source in graph.layer(target).sources:  # extraction attributes every direct source of a layer it walks
            seconds, result = cpu(lambda s=source, t=target: trace.attribution(graph, s, t, data, direct=True))
            parts.append((source, target, result.route, seconds))
    needed = sum(p[3] for p in parts)

    print(f"MobileNetV2 twin (random weights), 3x{size}x{size}, {n} noise images, extract {args.neuron} depth 2 "
          f"top-k 8; torch {torch.__version__}, {platform.machine()}, 1 thread, CPU seconds, "
          f"{time.strftime('%Y-%m-%d')}")  # fmt: skip
    print()
    print("| step | seconds |")
    print("|---|---|")
    for source, target, route, seconds in parts:
        print(f"| attribution `{source}` -> `{target}` ({route} route) | {seconds:.2f} |")
    print(f"| **the attributions extraction needs** | **{needed:.2f}** |")
    print(f"| **extract(method=\"attribution\")** | **{whole:.2f}** |")
    print()
    print(f"extraction / its attributions: {whole / needed:.2f}x")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.profile)
        print()
        print(out.getvalue())


if __name__ == "__main__":
    main()
