"""Rebuild the shipped zoo: train every recipe and seed, measure, write weights, metadata and model cards.

    python -m circuits.zoo.build                 # all families, all seeds (~15 models, minutes at 1 thread)
    python -m circuits.zoo.build plain-cnn       # one family
    python -m circuits.zoo.build --cards-only    # re-measure shipped weights and rewrite metadata and cards

Weights go to ``circuits/zoo/weights/FAMILY-sSEED.pt`` (a plain state_dict), metadata to ``FAMILY-sSEED.json``
and one card per family to ``circuits/zoo/cards/FAMILY.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

from circuits.zoo import CARDS_DIR, WEIGHTS_DIR, _metadata
from circuits.zoo.recipes import EVAL_SEED, RECIPES, SEEDS

EVAL_N = 2000
PROBE_SEED = 777  # probe images for the motif measurements
PROBE_N = 1000


def measure(module, family: str) -> dict:
    """Motif numbers for a family's card (see :mod:`circuits.zoo.analysis`)."""
    from circuits.data import toyworld
    from circuits.zoo.analysis import curve_families, reflection_unions

    recipe = RECIPES[family]
    if recipe.architecture == "PlainCNN":
        probe, _, _ = toyworld.generate(PROBE_N, seed=PROBE_SEED, size=recipe.size, rgb=recipe.rgb, task="objects")
        found = reflection_unions(module, probe)
        return {"reflection_unions": {"probe": f"toyworld:{PROBE_N}:{PROBE_SEED}", "count": len(found), "neurons": found[:5]}}
    if recipe.architecture == "CurveCNN":
        return {"curve_families": curve_families(module, ("conv1", "conv2", "conv3"))}
    return {}


def write_model(family: str, seed: int, result) -> dict:
    from circuits.zoo.train import evaluate

    recipe = RECIPES[family]
    module = result.module
    name = f"{family}-s{seed}"
    WEIGHTS_DIR.mkdir(exist_ok=True)
    torch.save(module.state_dict(), WEIGHTS_DIR / f"{name}.pt")
    info = {
        "name": name,
        "family": family,
        "architecture": recipe.architecture,
        "seed": seed,
        "task": recipe.task,
        "classes": list(__import__("circuits.data.toyworld", fromlist=["x"]).class_names(recipe.task)),
        "input_shape": list(recipe.input_shape),
        "params": sum(p.numel() for p in module.parameters()),
        "accuracy": round(evaluate(module, recipe, n=EVAL_N, seed=EVAL_SEED), 4),
        "eval_data": f"toyworld:{recipe.task}:{EVAL_N}:{EVAL_SEED}",
        "recipe_hash": recipe.hash,
        "recipe": recipe.as_dict(),
        "data_recipe": recipe.data_recipe(),
        "weights_sha256": result.weights_hash,
        "train_seconds": round(result.seconds, 1),
        "train_steps": result.steps,
        "trained_with": {"torch": torch.__version__, "machine": platform.machine(), "threads": 1},
        "train_command": f"circuits zoo train {family} --seed {seed}",
        "motifs": measure(module, family),
    }
    (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    _metadata.cache_clear()
    return info


def write_card(family: str) -> None:
    recipe = RECIPES[family]
    infos = [_metadata(f"{family}-s{seed}") for seed in SEEDS if (WEIGHTS_DIR / f"{family}-s{seed}.json").is_file()]
    lines = [
        f"# {family}",
        "",
        recipe.description + ".",
        "",
        f"- architecture: `{recipe.architecture}` ({', '.join(f'{k}={v}' for k, v in recipe.arch_kwargs.items())})",
        f"- task: `{recipe.task}`; classes: {', '.join(infos[0]['classes']) if infos else ''}",
        f"- data recipe: {recipe.data_recipe()}",
        f"- training: Adam lr {recipe.lr} (cosine to 0), batch {recipe.batch}, {recipe.epochs} epochs, 1 thread, "
        "deterministic algorithms",
        *([f"- wiring sparsity: {recipe.wiring_penalty} x mean over neurons of L1/L2 of their input-kernel norms, in "
           f"{', '.join(f'`{name}`' for name in recipe.wiring_layers)} (see `circuits.zoo.train.wiring_cost`)"]
          if recipe.wiring_penalty else []),
        f"- recipe hash: `{recipe.hash}`",
        f"- held-out accuracy measured on `toyworld:{recipe.task}:{EVAL_N}:{EVAL_SEED}` (never used in training)",
        f"- reproduce: `circuits zoo train {family} --seed S -o {family}-sS.pt` (same weights hash on the same torch "
        "version and CPU)",
        "",
        "| name | seed | params | held-out accuracy | weights sha256 | train s (wall, shared 2-core machine) |",
        "|---|---|---|---|---|---|",
    ]
    for info in infos:
        lines.append(
            f"| `{info['name']}` | {info['seed']} | {info['params']:,} | {info['accuracy']:.4f} | "
            f"`{info['weights_sha256'][:16]}` | {info['train_seconds']} |"
        )
    lines += ["", "## Motifs", ""] + _motif_lines(recipe, infos)
    CARDS_DIR.mkdir(exist_ok=True)
    (CARDS_DIR / f"{family}.md").write_text("\n".join(lines) + "\n")


def _motif_lines(recipe, infos) -> list[str]:
    if recipe.architecture == "PlainCNN":
        out = [
            "Union over reflection (Distill, *Naturally Occurring Equivariance*): a neuron with corr(act(x), "
            "act(flip x)) >= 0.9 (activations max-pooled over space) while two of its top-4 positive inputs "
            "(by the signed sum of the conv kernel) form a mirror pair: corr(act_i(flip x), act_j(x)) >= 0.8 and "
            "corr(act_i(flip x), act_i(x)) < 0.6. Probe: `toyworld:1000:777`.",
            "",
            "| model | union neurons | best neuron | invariance | mirror pair | mirror corr | self corr |",
            "|---|---|---|---|---|---|---|",
        ]
        for info in infos:
            union = info["motifs"]["reflection_unions"]
            if union["neurons"]:
                best = union["neurons"][0]
                out.append(
                    f"| `{info['name']}` | {union['count']} | `{best['layer']}:{best['channel']}` | "
                    f"{best['invariance']:.3f} | `{best['source']}:{best['pair'][0]}` / "
                    f"`{best['source']}:{best['pair'][1]}` | {best['mirror_corr']:.3f} | {best['self_corr']:.3f} |"
                )
            else:
                out.append(f"| `{info['name']}` | 0 | — | — | — | — | — |")
        return out
    if recipe.architecture == "CurveCNN":
        out = [
            "Orientation tuning, read at the centre of each map, to arcs centred in the image at 16 orientations "
            "(the same arcs, rotated). Selectivity = length of the "
            "mean resultant vector of the tuning curve above its minimum (>= 0.3 counts as selective); a family = neurons whose "
            "tuning curves are rotated copies (circular-shift correlation >= 0.8); coverage = fraction of the "
            "circle within one 22.5° bin of a member's preferred orientation.",
            "",
            "| model | layer | selective / channels | mean selectivity | largest family | its preferred angles | "
            "shift corr | coverage |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for info in infos:
            for layer, rep in info["motifs"]["curve_families"].items():
                fam = rep["families"][0] if rep["families"] else None
                out.append(
                    f"| `{info['name']}` | {layer} | {len(rep['selective'])} / {rep['n_channels']} | "
                    f"{rep['mean_selectivity']:.3f} | "
                    + (f"{len(fam['members'])} ({', '.join(fam['members'])}) | {fam['preferred_deg']} | "
                       f"{fam['mean_shift_corr']:.3f} | {fam['coverage']:.2f} |" if fam else "— | — | — | — |")
                )
        return out
    return [
        "No motif measurements are recorded for this family yet; it is here so that tools can be checked on a "
        "different architecture (concat / residual / dense layers) trained on the same task as `plain-cnn`."
    ]


def main(argv=None) -> int:
    from circuits.zoo.train import train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("families", nargs="*", default=list(RECIPES))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--cards-only", action="store_true")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    for family in args.families:
        for seed in seeds:
            if args.cards_only:
                from circuits.zoo import load

                loaded = load(f"{family}-s{seed}")
                result = _Shipped(loaded.module, _metadata(f"{family}-s{seed}"))
            else:
                result = train(family, seed)
            info = write_model(family, seed, result)
            print(f"{info['name']}: accuracy {info['accuracy']:.4f}, {info['train_seconds']} s, "
                  f"{info['weights_sha256'][:12]}", file=sys.stderr, flush=True)
        write_card(family)
    return 0


class _Shipped:
    """A shipped model in the shape of a TrainResult (for --cards-only)."""

    def __init__(self, module, info):
        self.module = module
        self.weights_hash = info["weights_sha256"]
        self.seconds = info["train_seconds"]
        self.steps = info["train_steps"]


if __name__ == "__main__":
    sys.exit(main())
