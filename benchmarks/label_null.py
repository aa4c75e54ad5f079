"""How selective random filters are: the planted line detectors against many shuffled-weight copies.

The labels issue asks that a shuffled-weight control label nothing. This measures why no AUROC bar can do
that while the planted detectors keep their names. For ``planted:lines`` (8 hand-built oriented-line
detectors, 5x5, one grey input channel) on ``toyworld:strokes:2000:1``, each of ``--shuffles`` copies of the
layer with its weights shuffled (``circuits.motifs.control.shuffle_weights``, seeds 0..S-1) gives 8 random
filters; every filter's best AUROC over all concepts is set beside the planted detectors' own, and the
share of random filters that reach the weakest planted score is the share a bar low enough to name every
planted detector would also name. The same again with Gaussian pixel noise added to the images: a matched
filter keeps its selectivity in noise longer than a random one (its response is the line's projection on
the line's own template), so the gap widens, but does not open fully.

    python benchmarks/label_null.py            # about 3 minutes on one core; writes RESULTS_label_null.md
"""

from __future__ import annotations

import argparse
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
SPEC, LAYER, DATA = "planted:lines", "lines", "toyworld:strokes:2000:1"


def best_aurocs(graph, images, positives) -> np.ndarray:
    """Every neuron's best AUROC over all concepts (the score ``circuits label`` compares with its bar)."""
    from circuits.labels.responses import responses
    from circuits.labels.selectivity import auroc

    return np.nanmax(auroc(responses(graph, images, [LAYER])[0][LAYER], positives), axis=0)


def measure(shuffles: int, sigmas: list[float]) -> list[dict]:
    from circuits import load
    from circuits.data.spec import load_labelled
    from circuits.graph import build_graph
    from circuits.labels.concepts import candidates, factors
    from circuits.motifs.control import shuffle_weights

    module = load(SPEC).module
    graph = build_graph(module)
    data = load_labelled(DATA, graph.input_shape, masks=False)
    table = factors(data.task, data.labels, data.latents)
    positives = np.stack([c.positives(table) for c in candidates(table)], axis=1)
    controls = [build_graph(shuffle_weights(module, seed)) for seed in range(shuffles)]
    rows = []
    for sigma in sigmas:
        noise = torch.randn(data.images.shape, generator=torch.Generator().manual_seed(0))
        images = data.images + sigma * noise
        planted = best_aurocs(graph, images, positives)
        null = np.concatenate([best_aurocs(g, images, positives) for g in controls])
        weakest = float(planted.min())
        rows.append({"sigma": sigma, "planted_min": weakest, "planted_max": float(planted.max()),
                     "null_q50": float(np.quantile(null, 0.5)), "null_q90": float(np.quantile(null, 0.9)),
                     "null_max": float(null.max()), "null_at_planted": float((null >= weakest).mean()),
                     "null_at_bar": float((null >= 0.9).mean()), "filters": len(null)})  # fmt: skip
    return rows


def markdown(rows: list[dict], shuffles: int) -> str:
    lines = ["# Random filters are selective: the planted line detectors against shuffled copies", "",
             f"`{SPEC}` (8 hand-built 5x5 oriented-line detectors) on `{DATA}`; {shuffles} shuffled-weight "
             f"copies of its layer give {rows[0]['filters']} random filters with the same weight values. Each "
             "neuron's score is its best AUROC over every concept `circuits label` scores (the number it holds "
             "against the bar, 0.9). *Share at the weakest planted*: random filters as selective as the least "
             "selective planted detector, which is what any bar that names all 8 would also name.", "",
             "| pixel noise sd | planted detectors | random filters: median | 90th percentile | max | share at bar 0.9 | share at the weakest planted |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['sigma']:g} | {r['planted_min']:.3f}–{r['planted_max']:.3f} | {r['null_q50']:.3f} | "
                     f"{r['null_q90']:.3f} | {r['null_max']:.3f} | {r['null_at_bar']:.0%} | {r['null_at_planted']:.1%} |")  # fmt: skip
    lines += ["", f"Produced by `python benchmarks/label_null.py --shuffles {shuffles}` on "
              f"{datetime.now(UTC):%Y-%m-%d}; torch {torch.__version__}, Python {platform.python_version()}.", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shuffles", type=int, default=25)
    parser.add_argument("--sigmas", default="0,0.1,0.2,0.3,0.5", help="pixel noise sd, comma-separated")
    parser.add_argument("--out", default=str(HERE / "RESULTS_label_null.md"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = measure(args.shuffles, [float(s) for s in args.sigmas.split(",")])
    text = markdown(rows, args.shuffles)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
