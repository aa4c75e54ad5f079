"""Rebuild the shipped zoo: train every recipe and seed, measure, write weights, metadata and model cards.

    python -m circuits.zoo.build                 # all families, all seeds (~15 models, minutes at 1 thread)
    python -m circuits.zoo.build plain-cnn       # one family
    python -m circuits.zoo.build --cards-only    # re-measure shipped weights and rewrite metadata and cards
    python -m circuits.zoo.build --labels-only   # re-measure the shipped models' automatic labels only

Weights go to ``circuits/zoo/weights/FAMILY-sSEED.pt`` (a plain state_dict), metadata to ``FAMILY-sSEED.json``
and one card per family to ``circuits/zoo/cards/FAMILY.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

from circuits.zoo import CARDS_DIR, WEIGHTS_DIR, _metadata, shipped_labels
from circuits.zoo.recipes import EVAL_SEED, RECIPES, SEEDS

EVAL_N = 2000
PROBE_SEED = 777  # probe images for the motif measurements
PROBE_N = 1000
FACING_SEED = 5151  # fresh images for the facing family's case measurements
LABEL_DATA = "toyworld:{task}:2000:4242"  # fresh images (not training, eval or probe data) for the shipped labels


def measure(module, family: str) -> dict:
    """Motif numbers for a family's card (see :mod:`circuits.zoo.analysis`)."""
    from circuits.data import toyworld
    from circuits.zoo.analysis import curve_families, reflection_unions

    recipe = RECIPES[family]
    if recipe.architecture in ("PlainCNN", "FacingCNN"):
        probe, _, _ = toyworld.generate(PROBE_N, seed=PROBE_SEED, size=recipe.size, rgb=recipe.rgb, task="objects")
        found = reflection_unions(module, probe)
        out = {"reflection_unions": {"probe": f"toyworld:{PROBE_N}:{PROBE_SEED}", "count": len(found), "neurons": found[:5]}}
        if recipe.architecture == "FacingCNN":
            from circuits.zoo.analysis import facing_cases

            images, labels, latents = toyworld.generate(3000, seed=FACING_SEED, size=recipe.size, rgb=recipe.rgb,
                                                        task="objects")  # fmt: skip
            out["facing_cases"] = {"data": f"toyworld:3000:{FACING_SEED}",
                                   "classes": facing_cases(module, images, labels.numpy(), latents["facing"])}  # fmt: skip
        return out
    if recipe.architecture == "CurveCNN":
        return {"curve_families": curve_families(module, ("conv1", "conv2", "conv3"))}
    return {}


def measure_labels(module, family: str) -> dict:
    """The model's automatic labels (``circuits label``) as shipped with it: every labelled neuron's label,
    concept and AUROC, and each layer's coverage."""
    from circuits.labels import label_neurons

    result = label_neurons(module, data=LABEL_DATA.format(task=RECIPES[family].task))
    keep = ("neuron", "label", "concept", "score", "cases")
    return {"data": result.data, "bar": result.bar, "coverage": result.coverage(),
            "neurons": [{k: v for k, v in n.to_dict().items() if k in keep} for n in result.labelled()]}  # fmt: skip


def write_labels(family: str, seed: int) -> dict:
    """Re-measure the shipped model's labels and rewrite only that key of its metadata (the weights stay)."""
    from circuits.zoo import load

    name = f"{family}-s{seed}"
    path = WEIGHTS_DIR / f"{name}.json"
    info = json.loads(path.read_text())
    info["labels"] = measure_labels(load(name).module, family)
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    _metadata.cache_clear()
    return info


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
        "labels": measure_labels(module, family),
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
    lines += ["", "## Motifs", ""] + _motif_lines(recipe, infos) + _label_lines(infos)
    CARDS_DIR.mkdir(exist_ok=True)
    (CARDS_DIR / f"{family}.md").write_text("\n".join(lines) + "\n")


def _label_lines(infos) -> list[str]:
    """Per model: labelled neurons per layer, and the labels of its union neurons (``circuits label``)."""
    infos = [info for info in infos if "labels" in info]
    if not infos:
        return []
    layers = list(infos[0]["labels"]["coverage"])
    out = ["", "## Labels", "",
           f"`circuits label` on `{infos[0]['labels']['data']}` (fresh images): a neuron is labelled with the simplest "
           f"concept whose AUROC reaches {infos[0]['labels']['bar']} (docs/labels.md). Labelled / neurons per layer:",
           "", "| model | " + " | ".join(layers) + " | best reflection union and its mirror pair, labelled |", "|---|" + "---|" * (len(layers) + 1)]  # fmt: skip
    for info in infos:
        labels = info["labels"]
        named = shipped_labels(info)
        unions = info.get("motifs", {}).get("reflection_unions", {}).get("neurons", [])
        shown = "—"
        if unions:
            best = unions[0]
            union = f"{best['layer']}:{best['channel']}"
            cases = [f"{best['source']}:{c}" for c in best["pair"]]
            shown = "; ".join(f"`{n}` {named.get(n, '(unlabelled)')}" for n in [union, *cases])
        cells = [f"{labels['coverage'][layer]['labelled']} / {labels['coverage'][layer]['neurons']}" for layer in layers]
        out.append(f"| `{info['name']}` | " + " | ".join(cells) + f" | {shown} |")
    return out


def _facing_lines(infos) -> list[str]:
    out = ["", "Facing cases: per class, its two case channels' AUROC for their own facing against the other, "
           "within the class, and the class neuron's (0.5: it cannot tell them apart), on fresh images "
           f"(`{infos[0]['motifs']['facing_cases']['data']}`), with the shipped labels.", "",
           "| model | class | left case | AUROC | right case | AUROC | union | left vs right | its weights on the "
           "cases (rank of 32) |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for info in infos:
        named = shipped_labels(info)
        for c in info["motifs"]["facing_cases"]["classes"]:
            def shown(neuron, named=named):
                return f"`{neuron}` {named.get(neuron, '(unlabelled)')}"

            out.append(f"| `{info['name']}` | {c['class']} | {shown(c['left'])} | {c['left_auroc']:.3f} | "
                       f"{shown(c['right'])} | {c['right_auroc']:.3f} | {shown(c['union'])} | "
                       f"{c['union_between']:.3f} | "
                       + ", ".join(f"{w:+.2f} ({r})" for w, r in zip(c["union_weights"], c["union_ranks"])) + " |")  # fmt: skip
    return out


def _motif_lines(recipe, infos) -> list[str]:
    if recipe.architecture in ("PlainCNN", "FacingCNN"):
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
        if recipe.architecture == "FacingCNN":
            out += _facing_lines(infos)
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
    parser.add_argument("--labels-only", action="store_true", help="re-measure the shipped models' labels only")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    for family in args.families:
        for seed in seeds:
            if args.labels_only:
                info = write_labels(family, seed)
                print(f"{info['name']}: {len(info['labels']['neurons'])} labels", file=sys.stderr, flush=True)
                continue
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
