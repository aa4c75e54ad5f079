"""Motif benchmark: equivariance on one layer of a GoogLeNet-size network, against a naive baseline.

Run:  python benchmarks/bench_motifs.py                      (inception3b, weights and 16 probe images)
      python benchmarks/bench_motifs.py --layer inception4c  (512 neurons whose receptive field is the image)
      python benchmarks/bench_motifs.py --quick              (conv3, 4 images: a smoke run)

The network is benchmarks/googlenet.py (GoogLeNet v1 layout, torchvision's channel counts, random seeded
weights). One torch thread; times are process CPU seconds (best of ``--repeats``), so other jobs on a shared
machine do not count. Measured in the same run:

1. ``circuits.motifs.equivariance(ctx, layer)`` from weights: the expanded kernels to the input
   (``trace.weights(expanded=True)``, once, uncached), then for each transform (reflect, rotate90, rotate
   22.5°, rotate 45°) the similarity matrices and the matching;
2. the baseline for step 1's similarity: the naive loop, one cosine per (i, j) pair of transformed kernels
   in Python, timed on a subset of rows and extrapolated to all C x C pairs;
3. with ``--images N`` > 0, the activation evidence: forward passes on the N probe images and on their
   transformed copies, and the aligned map correlations.

Random weights hold no motifs, so the point is the time it takes, not what is found (the count is printed).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from circuits.motifs import Context, equivariance  # noqa: E402
from circuits.motifs.families import default_transforms, group_map  # noqa: E402


def cpu(fn):
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def naive_similarity_seconds(kernels: torch.Tensor, transform, rows: int) -> float:
    """Seconds for all C x C cosines computed pair by pair, from ``rows`` rows timed."""
    c = kernels.shape[0]
    mask = transform.valid_mask(*kernels.shape[-2:])
    moved = [transform(kernels[i]) * mask for i in range(rows)]
    fixed = [kernels[j] * mask for j in range(c)]
    start = time.process_time()
    for i in range(rows):
        for j in range(c):
            torch.nn.functional.cosine_similarity(moved[i].flatten(), fixed[j].flatten(), dim=0)
    return (time.process_time() - start) * c / rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="inception3b")
    parser.add_argument("--images", type=int, default=16, help="probe images for activation evidence (0: none)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.layer, args.images = "conv3", 4
    torch.set_num_threads(1)
    os.environ["CIRCUITS_CACHE"] = "0"
    from googlenet import GoogLeNet

    model = GoogLeNet()
    build, ctx = cpu(lambda: Context(model))
    layers = ctx.parts(args.layer)
    trace_s, (kernels, _) = cpu(lambda: ctx.input_kernels(layers))
    rows = []
    total = 0.0
    for transform in default_transforms():
        best = min(cpu(lambda t=transform: _fresh_map(ctx, layers, t))[0] for _ in range(args.repeats))
        naive = naive_similarity_seconds(kernels, transform, rows=min(8, kernels.shape[0]))
        rows.append((repr(transform), best, naive))
        total += best
    _, found = cpu(lambda: equivariance(ctx, args.layer))

    print(f"GoogLeNet (random weights), layer {args.layer}: {kernels.shape[0]} neurons, expanded kernels "
          f"{tuple(kernels.shape[1:])}; torch {torch.__version__}, {platform.machine()}, 1 thread, CPU seconds")  # fmt: skip
    print()
    print("| step | ours (s) | naive pair loop (s) | ratio |")
    print("|---|---|---|---|")
    print(f"| build the neuron graph | {build:.2f} | | |")
    print(f"| expanded kernels to the input (trace.weights) | {trace_s:.2f} | | |")
    for name, ours, naive in rows:
        print(f"| {name}: similarity, gates, matching | {ours:.2f} | {naive:.1f} | {naive / ours:.0f}x |")
    print(f"| **weights-only total** | **{build + trace_s + total:.2f}** | | |")
    if args.images:
        from circuits.data import load_data

        data = load_data(f"toyworld:{args.images}", model.input_shape)
        with_data = Context(ctx.graph, data)
        with_data._kernels = ctx._kernels
        acts_s, _ = cpu(lambda: [group_map(with_data, layers, t) for t in default_transforms()])
        print(f"| with {args.images} probe images: activations on images and transformed images, correlations "
              f"| {acts_s:.2f} | | |")  # fmt: skip
    print()
    print(f"families found: {len(found)} (random weights: none expected)")


def _fresh_map(ctx, layers, transform):
    ctx.memo.clear()
    return group_map(ctx, layers, transform)


if __name__ == "__main__":
    main()
