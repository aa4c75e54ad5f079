"""``circuits zoo``: list, show and retrain the shipped toy-world models."""

from __future__ import annotations

from pathlib import Path

import click

from circuits.cli._common import device_option, echo_json


@click.group()
def zoo():
    """Small models trained on the toy world, shipped with weights and model cards.

    \b
    Load one anywhere a model spec is taken: zoo:NAME (e.g. zoo:plain-cnn, zoo:curve-cnn-s2).
      circuits zoo list
      circuits zoo show plain-cnn
      circuits zoo train plain-cnn --seed 1 -o plain-cnn-s1.pt
      circuits zoo catalog -o catalog.db
    """


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema_version, models, provenance).")
def list_(as_json):
    """List zoo models: name, architecture, parameters, held-out accuracy, recipe hash.

    \b
    Example:
      circuits zoo list --json
    """
    from circuits import zoo as registry

    rows = []
    for name in registry.names():
        family, seed = registry.resolve(name)
        if name == family:
            continue  # aliases are mentioned below the table, not repeated in it
        info = registry.card(name)
        rows.append({k: info[k] for k in ("name", "family", "architecture", "seed", "task", "params", "accuracy",
                                          "recipe_hash", "weights_sha256")})
    if as_json:
        aliases = {family: f"{family}-s0" for family in registry.RECIPES}
        echo_json({"models": rows, "aliases": aliases}, {"command": "zoo list"})
        return
    from circuits.formatting import zoo_table

    click.echo(zoo_table(rows))
    click.echo("\nA bare family name (e.g. plain-cnn) is an alias of its seed 0.")


@zoo.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the card's metadata as JSON.")
def show(name, as_json):
    """Show the model card of NAME: data recipe, accuracy, seed, motifs.

    \b
    Example:
      circuits zoo show plain-cnn-s1
    """
    from circuits import zoo as registry

    info = registry.card(name)
    if as_json:
        payload = {k: v for k, v in info.items() if k != "card_markdown"}
        echo_json({"card": payload}, {"command": "zoo show", "name": name}, info["weights_sha256"])
        return
    click.echo(info["card_markdown"].rstrip())
    click.echo(f"\nThis model: {info['name']} (seed {info['seed']}), held-out accuracy {info['accuracy']:.4f}, "
               f"weights sha256 {info['weights_sha256']}")


@zoo.command()
@click.argument("name")
@click.option("--seed", type=int, default=None, help="Training seed (0, 1, 2 are shipped); taken from NAME-sS if omitted.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to save the state_dict (default: NAME-sSEED.pt in the current folder).")
@click.option("--fast", is_flag=True, help="Train only a few steps on a little data (a determinism check, not a model).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(name, seed, output, fast, as_json):
    """Retrain zoo model NAME from its recipe, deterministically, on one CPU thread.

    Without --fast the weights hash equals the shipped one on the same torch version and CPU, and the
    result says whether it does.

    \b
    Examples:
      circuits zoo train plain-cnn --seed 1 -o plain-cnn-s1.pt
      circuits zoo train curve-cnn-s0 --fast --json
    """
    from circuits import zoo as registry
    from circuits.errors import UsageError

    family, name_seed = registry.resolve(name)
    explicit = name != family
    if seed is None:
        if not explicit:
            raise UsageError(f"say which seed to train: `circuits zoo train {family} --seed 0` (or name {family}-s0)")
        seed = name_seed
    elif explicit and seed != name_seed:
        raise UsageError(f"'{name}' is seed {name_seed} but --seed {seed} was given; give one or the other")
    from circuits.cli._common import check_writable
    from circuits.limits import check_seed

    check_seed(seed, "--seed")
    output = output or f"{family}-s{seed}{'-fast' if fast else ''}.pt"
    check_writable(output, "-o")  # before a training run, not after it
    result = _train_with_progress(family, seed, fast)

    import io

    import torch

    from circuits.pyfiles import write_atomic

    buffer = io.BytesIO()
    torch.save(result.module.state_dict(), buffer)
    write_atomic(Path(output), buffer.getvalue())
    shipped = None
    try:
        shipped = registry.card(f"{family}-s{seed}")["weights_sha256"]
    except Exception:  # an unshipped seed: nothing to compare with
        shipped = None
    payload = {
        "name": f"{family}-s{seed}",
        "family": family,
        "seed": seed,
        "fast": fast,
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "accuracy": round(result.accuracy, 4),
        "recipe_hash": result.recipe.hash,
        "weights_sha256": result.weights_hash,
        "shipped_sha256": shipped,
        "matches_shipped": None if (fast or shipped is None) else shipped == result.weights_hash,
        "output": str(output),
    }
    if as_json:
        echo_json(payload, {"command": "zoo train", "name": name, "seed": seed, "fast": fast,
                            "output": str(output)}, result.weights_hash)
        return
    click.echo(f"saved {output}: accuracy {payload['accuracy']:.4f} ({result.steps} steps, {payload['seconds']} s)")
    click.echo(f"weights sha256 {result.weights_hash}")
    if payload["matches_shipped"] is not None:
        click.echo("matches the shipped weights" if payload["matches_shipped"] else
                   f"differs from the shipped weights ({shipped}); see docs/zoo.md on determinism")


def _train_with_progress(family: str, seed: int, fast: bool):
    from tqdm import tqdm

    from circuits.zoo.train import train as train_model

    bar = tqdm(total=None, desc=f"{family} seed {seed}", unit="step", file=click.get_text_stream("stderr"),
               leave=False, disable=None)

    def progress(step, total):
        if bar.total != total:
            bar.total = total
        bar.update(1)

    try:
        return train_model(family, seed, fast=fast, progress=progress)
    finally:
        bar.close()


@zoo.command("catalog")
@click.option("-o", "--output", "path", default="catalog.db", show_default=True, type=click.Path(dir_okay=False),
              help="The catalog to (re)build; existing rows are kept, new ones added.")
@click.option("--model", "models", multiple=True, metavar="NAME", help="Only these zoo models (repeatable).")
@click.option("--data", default=None, metavar="SPEC", help="Held-out probe images (default toyworld:256:12345).")
@click.option("--top-k", default=8, show_default=True, type=int, help="Inputs kept per union neuron's circuit.")
@click.option("--json", "as_json", is_flag=True, help="Print one row per model as JSON.")
@device_option
def catalog_(path, models, data, top_k, as_json, device):
    """Build the shared catalog of the zoo: every model's unions over cases (circuits motifs), each union
    neuron's circuit, and that circuit reverse-compiled with its measured faithfulness; for the wiring-sparse
    plain CNN, every conv3 neuron's circuit and module.

    The repository's catalog.db is exactly this, rebuilt with `circuits zoo catalog -o catalog.db`.

    \b
    Example:
      circuits zoo catalog -o catalog.db
      circuits catalog list --kind instances --catalog catalog.db
    """
    from circuits import zoo as registry
    from circuits.catalog import check_writable
    from circuits.progress import progress_bar
    from circuits.zoo.catalog import DEFAULT_DATA, build_catalog

    check_writable(path, "copy it somewhere writable or pass another -o")  # before any model is loaded

    for name in models:
        registry.resolve(name)
    names = list(models) or None
    total = len(names) if names else sum(1 for n in registry.names() if n not in registry.RECIPES)
    with progress_bar(desc="zoo catalog", total=total, unit="model") as bar:
        rows = build_catalog(path, names, data or DEFAULT_DATA, top_k, progress=bar.update, device=device)
    if as_json:
        echo_json({"catalog": str(path), "models": rows},
                  {"command": "zoo catalog", "output": str(path), "models": list(models), "data": data, "top_k": top_k})
        return
    from circuits.formatting import zoo_catalog_table

    if rows:
        click.echo(zoo_catalog_table(rows))
    click.echo(f"catalog written to {path}")
