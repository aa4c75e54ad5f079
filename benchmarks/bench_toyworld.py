"""Toy-world rendering speed on one core, per task and colour mode, as a ratio to a baseline in the same run.

    python benchmarks/bench_toyworld.py [--n 4000]

The baseline is numpy allocating and filling the same number of float32 pixels (``rng.random``): the ratio
says how many "pixel fills" one rendered image costs, which is comparable across machines; images/s is
reported too, against the 2,000 images/s target of issue 4. CPU time of this process is measured, so other
jobs on the machine do not distort it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from circuits.data import toyworld


def _cpu_seconds(func) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        func()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, size = args.n, args.size
    rng = np.random.default_rng(0)
    baseline = _cpu_seconds(lambda: rng.random((n, 1, size, size), dtype=np.float32))
    print(f"baseline (numpy fill of {n}x1x{size}x{size}): {baseline * 1e3:.1f} ms")
    print(f"{'task':<11} {'colour':<6} {'images/s':>9} {'x baseline':>11}")
    for task in toyworld.TASKS:
        for rgb in (False, True):
            toyworld.generate(64, seed=0, size=size, rgb=rgb, task=task)
            seconds = _cpu_seconds(lambda task=task, rgb=rgb: toyworld.generate(n, seed=1, size=size, rgb=rgb, task=task))
            print(f"{task:<11} {'rgb' if rgb else 'grey':<6} {n / seconds:>9.0f} {seconds / baseline:>11.1f}")


if __name__ == "__main__":
    main()
