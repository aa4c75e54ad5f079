"""`circuits motifs` and `circuits universality`: find motifs in one model, match them across models."""

import click

from circuits.cli._common import (
    add_loaded_model,
    device_option,
    echo_json,
    load_model,
    model_options,
    normalize_option,
)  # fmt: skip

KIND_HELP = "union|equivariance|inhibition|polysemantic|network|all"


@click.command()
@model_options
@click.option("--kind", default="all", show_default=True, metavar=KIND_HELP, help="Which detector to run.")
@click.option("--layer", metavar="LAYER", help="Only this layer (as `circuits layers` names it).")
@click.option("--data", metavar="SPEC", help="Probe images for activation evidence: toyworld[:TASK][:N][:SEED], "
              "noise:N, a folder, .npy or .pt. Without it, weights alone.")  # fmt: skip
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Tune a detector's gate (repeatable): threshold=0.7, margin=0.05, top_k=6, balance=0.3, ... "
              "(the names each detector takes are in docs/motifs.md; a wrong one is refused with suggestions).")
@click.option("--explain", metavar="L:C,L:C", help="Say why this pair of neurons was or was not reported as "
              "transformed copies: every gate, with its numbers, per transform (with --data, as the detector sees it).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in docs/motifs.md).")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), envvar="CIRCUITS_CATALOG",
              help="Record the motifs in this catalog (also $CIRCUITS_CATALOG).")  # fmt: skip
@normalize_option
@device_option
def motifs(model, weights, input_shape, kind, layer, data, settings, explain, as_json, catalog_path, normalize,
           device):  # fmt: skip
    """Find motifs in MODEL: equivariant families, unions over cases, opponents, polysemantic neurons and
    network motifs.

    Equivariance, unions and inhibition are found from the weights (expanded to the input and
    transformed by reflection and rotation); --data adds activation evidence, confirms unions and
    opponents, and is needed for polysemantic neurons. Network motifs are z-scores against a seeded,
    degree-preserving randomised baseline. Scores are in [0, 1].

    \b
    Examples:
      circuits motifs planted:union
      circuits motifs planted:curves --kind equivariance --json
      circuits motifs zoo:plain-cnn-s0 --kind union --data toyworld:512
      circuits motifs zoo:plain-cnn-s0 --layer conv2 --data toyworld:256 --catalog catalog.db
      circuits motifs planted:complex-union --explain complex:0,complex:1 --data toyworld:strokes:256
      circuits motifs zoo:plain-cnn-s2 --kind union --data toyworld:512 --set threshold=0.7
    """
    from circuits.motifs import find, to_json

    if explain:
        return _explain(model, weights, input_shape, explain, data, as_json, device, normalize)

    if catalog_path:
        from circuits.catalog import check_writable

        check_writable(catalog_path)  # before the model is loaded and searched
    loaded = load_model(model, weights, input_shape)
    options = _settings(settings)
    found = find(loaded, kind=kind, layer=layer, data=data, device=device, normalize=normalize, **options)
    payload = to_json(loaded.spec, found)
    named = {n for m in payload["motifs"] for n in [m["target"], *m["members"]] if n}
    payload["labels"] = {n: loaded.labels[n] for n in sorted(named) if n in loaded.labels}
    arguments = {"model": model, "weights": weights, "input_shape": input_shape, "kind": kind, "layer": layer,
                 "data": data, "normalize": normalize, "settings": options}  # fmt: skip
    if catalog_path:
        from circuits.catalog import Catalog

        with Catalog(catalog_path) as catalog:
            with catalog.transaction():
                add_loaded_model(catalog, loaded)
                catalog.add_motifs(loaded.weights_hash, payload)
    if as_json:
        echo_json(payload, arguments, loaded.weights_hash)
        return
    from circuits.formatting import motifs_table

    click.echo(motifs_table(payload))


@click.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL MODEL...")
@click.option("--data", default="toyworld:256", show_default=True, metavar="SPEC",
              help="Probe images shared by every model (made to fit each model's input shape).")  # fmt: skip
@click.option("--layer", "layers", multiple=True, metavar="LAYER",
              help="Match only these layers (repeatable); default: every layer the models share by name.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in docs/motifs.md).")
@device_option
def universality(models, data, layers, as_json, device):
    """Match the neurons of MODELs on shared probe data and group their motifs into families.

    Every model is matched to the first: per shared layer, neurons are correlated on the probe images and
    paired by the optimal one-to-one assignment. Motifs found in each model (equivariance, unions,
    inhibition) join one family when their neurons correspond.

    \b
    Examples:
      circuits universality zoo:plain-cnn-s0 zoo:plain-cnn-s1 zoo:plain-cnn-s2
      circuits universality zoo:curve-cnn-s0 zoo:curve-cnn-s1 --data toyworld:curves:512 --json
    """
    from circuits.errors import UsageError
    from circuits.motifs import universality as run

    if len(models) < 2:
        raise UsageError("universality compares models: give at least two MODELs")
    loaded = [load_model(m, None, None) for m in models]
    result = run(loaded, data, layers=list(layers) or None, device=device)
    payload = {"models": result["models"], "data": data,
               "weights_sha256": {name: m.weights_hash for name, m in zip(result["models"], loaded)},
               "matches": result["matches"], "families": result["families"]}  # fmt: skip
    if as_json:
        echo_json(payload, {"models": list(models), "data": data, "layers": list(layers)})
        return
    for match in payload["matches"]:
        for layer in match["layers"]:
            click.echo(f"{match['model_a']} ~ {match['model_b']}  {layer['layer_a']}: mean matched corr "
                       f"{layer['mean_corr']:.2f}, {len(layer['pairs'])} pairs >= 0.5")  # fmt: skip
    click.echo(f"{len(payload['families'])} motif families across models")
    for family in payload["families"]:
        where = "; ".join(f"{i['model']}: {i['target'] or ''} {', '.join(i['members'])}".replace("  ", " ")
                          for i in family["instances"])  # fmt: skip
        click.echo(f"  {family['kind']} {family['transform'] or ''}  {where}")


def _explain(model, weights, input_shape, pair, data, as_json, device, normalize):
    from circuits.errors import UsageError
    from circuits.formatting import explain_lines
    from circuits.motifs import Context
    from circuits.motifs.explain import explain

    names = [p.strip() for p in pair.split(",")]
    if len(names) != 2 or not all(names):
        raise UsageError(f"--explain takes two neurons, LAYER:CHANNEL,LAYER:CHANNEL (e.g. conv2:3,conv2:7), got '{pair}'")
    loaded = load_model(model, weights, input_shape)
    report = explain(Context(loaded, data, device=device, normalize=normalize), *names)
    if as_json:
        echo_json(report, {"model": model, "weights": weights, "input_shape": input_shape, "explain": pair,
                           "data": data, "normalize": normalize}, loaded.weights_hash)  # fmt: skip
        return
    click.echo("\n".join(explain_lines(report)))


def _settings(settings) -> dict:
    """``NAME=VALUE`` pairs as detector options (numbers as numbers; find() checks names and values)."""
    from circuits.errors import UsageError

    options = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--set takes NAME=VALUE (e.g. threshold=0.7), got '{item}'")
        value = value.strip()
        try:
            options[name.strip()] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            options[name.strip()] = {"true": True, "false": False}.get(value.lower(), value)
    return options
