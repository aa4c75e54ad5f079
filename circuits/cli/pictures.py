"""`circuits pictures`: pictures of a layer's neurons, their top examples, and how far to trust each picture."""

import click

from circuits.cli._common import add_loaded_model, device_option, echo_json, load_model, model_options

DEFAULT_DATA = "toyworld:512"
LOW = 0.5  # agreement below this is flagged (docs/pictures.md)


@click.command()
@model_options
@click.option("--layer", required=True, metavar="LAYER", help="The layer to picture (as `circuits layers` names it).")
@click.option("--neuron", "neurons", multiple=True, type=int, metavar="CH",
              help="Only this channel of --layer (repeatable); default: every channel.")  # fmt: skip
@click.option("--data", default=DEFAULT_DATA, show_default=True, metavar="SPEC",
              help="Natural images for the top examples and the agreement: toyworld[:TASK][:N][:SEED], noise:N, "
                   "photos[:N][:SEED], augment:N[:SEED]:FOLDER, a folder, .npy or .pt (docs/data.md); 'none' for "
                   "pictures alone.")  # fmt: skip
@click.option("--steps", default=256, show_default=True, type=click.IntRange(1, 100_000),
              help="Optimisation steps per picture.")  # fmt: skip
@click.option("--objective", type=click.Choice(["channel", "neuron"]), default="channel", show_default=True,
              help="channel: the mean over the map (a texture filling the picture); neuron: the centre position "
                   "(the picture inside its receptive field).")  # fmt: skip
@click.option("--copies", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Pictures per neuron from different starts (the extra ones are kind 'diverse').")  # fmt: skip
@click.option("--diversity", default=0.1, show_default=True, type=click.FloatRange(0, 100),
              help="With --copies: how hard a neuron's copies are pushed apart (cosine of their receptive fields).")  # fmt: skip
@click.option("--negative", is_flag=True, help="Also the picture that suppresses each neuron most.")
@click.option("--examples", "k", default=9, show_default=True, type=click.IntRange(1, 100),
              help="Top examples per neuron from --data.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1), help="Seed of the starts.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the PNGs (made if missing): DIR/LAYER/CH.png, ..., and DIR/LAYER.sheet.png.")  # fmt: skip
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), envvar="CIRCUITS_CATALOG",
              help="Record the pictures in this catalog (also $CIRCUITS_CATALOG).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object listing every file (docs/pictures.md).")
@device_option(help="Where the pictures are optimised: cpu, cuda or cuda:N. A GPU is far faster for a whole layer, "
               "but its pictures vary from run to run (docs/pictures.md): make the ones you cite on the CPU.")
def pictures(model, weights, input_shape, layer, neurons, data, steps, objective, copies, diversity, negative, k, seed,
             out_dir, catalog_path, as_json, device):  # fmt: skip
    """Pictures of the neurons of one layer of MODEL, with their top dataset examples and a number that
    says whether each picture can be trusted.

    Every channel of --layer is optimised in one batch (Fourier parameterisation, jitter, scale and
    rotation robustness). Each picture's *circuit agreement* compares the inputs it drives the neuron
    through with those its natural top examples use (1: the same; near 0: a path natural images never
    take, as a fooling circuit's picture does). Pictures are saved at the model's input size, examples
    as the crop of the neuron's receptive field; a contact sheet shows each neuron's row.

    \b
    Examples:
      circuits pictures zoo:plain-cnn --layer conv2 -o pictures/
      circuits pictures planted:fooling --layer readout --objective neuron -o pictures/ --json
      circuits pictures zoo:plain-cnn --layer conv3 --neuron 5 --copies 3 --negative -o pictures/
      circuits pictures zoo:plain-cnn --layer conv2 -o pictures/ --catalog catalog.db
    """
    import os

    from circuits.errors import UsageError
    from circuits.featvis.gallery import make_gallery, write_gallery

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"--out {out_dir}: that is a file; pass a folder")
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise UsageError(f"--out {out_dir}: folder '{parent}' does not exist; create it or pick another path")
    if not os.access(out_dir if os.path.isdir(out_dir) else parent, os.W_OK):
        raise UsageError(f"--out {out_dir}: not writable; pick another folder")
    if catalog_path:
        from circuits.catalog import check_writable

        check_writable(catalog_path)  # before any picture is optimised
    loaded = load_model(model, weights, input_shape)
    probe = None if data.strip().lower() == "none" else data
    gallery = make_gallery(loaded, layer, list(neurons) or None, data=probe, objective=objective, steps=steps,
                           copies=copies, diversity=diversity, negative=negative, k=k, seed=seed,
                           device=device)  # fmt: skip
    listed, sheets = write_gallery(gallery, out_dir, loaded.spec)
    arguments = {"model": model, "weights": weights, "input_shape": input_shape, "layer": layer,
                 "neurons": list(neurons), "data": data, "steps": steps, "objective": objective, "copies": copies,
                 "diversity": diversity, "negative": negative, "examples": k, "seed": seed, "out": out_dir}  # fmt: skip
    if catalog_path:
        _record(catalog_path, loaded, gallery, listed)
    if as_json:
        echo_json({"model": loaded.spec, "pictures": listed, "sheets": sheets}, arguments, loaded.weights_hash)
        return
    _print_summary(gallery, listed, sheets, probe)


def _record(catalog_path, loaded, gallery, listed) -> None:
    from circuits.catalog import Catalog

    rows = []
    for entry, item in zip(gallery.entries, listed):
        with open(item["path"], "rb") as handle:
            png = handle.read()
        rows.append({"neuron": entry.neuron, "kind": entry.kind, "rank": entry.rank, "png": png,
                     "method": gallery.methods[entry.kind], "activation": entry.activation,
                     "agreement": entry.agreement})  # fmt: skip
    with Catalog(catalog_path) as catalog:
        with catalog.transaction():
            add_loaded_model(catalog, loaded)
            catalog.add_pictures(loaded.weights_hash, rows, loaded.spec)


def _print_summary(gallery, listed, sheets, probe) -> None:
    pictures = [e for e in gallery.entries if e.kind == "optimised"]
    click.echo(f"{len(listed)} pictures of {len(gallery.channels)} neurons of {gallery.layer}")
    if probe is None:
        click.echo("  (no --data: no examples and no agreement)")
    for e in pictures:
        agreement = "agreement   -" if e.agreement is None else f"agreement {e.agreement:5.2f}"
        relative = "" if e.relative_activation is None else f"  x{e.relative_activation:.1f} of the best example"
        low = e.agreement is not None and e.agreement < LOW
        flag = "  <- low: the picture drives it through inputs natural images do not use" if low else ""
        click.echo(f"  {e.neuron:<16} {agreement}{relative}{flag}")
    for path in sheets:
        click.echo(f"contact sheet: {path}")
