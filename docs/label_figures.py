"""Draw docs/images/labels-coverage.png and labels-scores.png from real `circuits label` runs.

    python docs/label_figures.py      # about a minute on one core

Coverage: per layer, the fraction of neurons labelled, for each model beside the same model with its weights
shuffled within each layer (the control). Scores: every neuron's best AUROC, and the shuffled-label control's.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from circuits.labels.label import label_neurons, shuffled_weight_control  # noqa: E402
from circuits.models import load  # noqa: E402

OUT = Path(__file__).parent / "images"
MODELS = [("planted:union", "toyworld:strokes:2000:1"), ("zoo:facing-cnn-s0", "toyworld:objects:2000:4242"),
          ("zoo:plain-cnn-s0", "toyworld:objects:2000:4242")]  # fmt: skip


def main() -> None:
    runs = []
    for spec, data in MODELS:
        module = load(spec).module
        runs.append((spec, label_neurons(module, data=data), shuffled_weight_control(module, data=data)))
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.2), sharey=True)
    for ax, (spec, real, control) in zip(axes, runs):
        layers = real.layers
        xs = range(len(layers))
        ax.bar([x - 0.2 for x in xs], [real.coverage()[la]["fraction"] for la in layers], 0.4, label="model")
        ax.bar([x + 0.2 for x in xs], [control.coverage()[la]["fraction"] for la in layers], 0.4,
               label="weights shuffled", color="#bbb")  # fmt: skip
        ax.set_xticks(list(xs), layers, rotation=30)
        ax.set_title(spec, fontsize=9)
    axes[0].set_ylabel("neurons labelled (AUROC >= 0.9)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "labels-coverage.png", dpi=110)

    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.2), sharey=True)
    for ax, (spec, real, control) in zip(axes, runs):
        ax.hist([n.score for n in real.neurons], bins=20, range=(0.4, 1.0), label="best concept AUROC")
        ax.hist([n.score for n in control.neurons], bins=20, range=(0.4, 1.0), histtype="step", color="k",
                label="same, weights shuffled")  # fmt: skip
        ax.hist([n.control for n in real.neurons], bins=20, range=(0.4, 1.0), alpha=0.6, color="#d62728",
                label="factors shuffled (control)")  # fmt: skip
        ax.axvline(real.bar, color="k", linestyle=":")
        ax.set_title(spec, fontsize=9)
        ax.set_xlabel("AUROC")
    axes[0].set_ylabel("neurons")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT / "labels-scores.png", dpi=110)


if __name__ == "__main__":
    main()
