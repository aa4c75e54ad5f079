"""`circuits label` and `circuits find`: names for neurons from known concepts, and neurons for a concept."""

import click

from circuits.cli._common import (
    add_loaded_model,
    device_option,
    echo_json,
    load_model,
    model_options,
    normalize_option,
)

DATA_HELP = ("Toy-world images whose concepts are known: toyworld[:TASK][:N][:SEED]. Default: the model's own "
             "task (a zoo card's; strokes for planted nets), 2000 images, seed 1.")  # fmt: skip


@click.command()
@model_options
@click.option("--layer", "layers", multiple=True, metavar="LAYER",
              help="Only this layer (repeatable); default: every layer with weights.")  # fmt: skip
@click.option("--data", metavar="SPEC", help=DATA_HELP)
@click.option("--bar", default=0.9, show_default=True, type=click.FloatRange(0.5, 1.0),
              help="The AUROC a concept must reach to become a label (docs/labels.md says why 0.9).")  # fmt: skip
@click.option("--all", "show_all", is_flag=True, help="List unlabelled neurons too, with their best concept.")
@click.option("--control", is_flag=True, help="Also label a copy with its weights shuffled within each layer, and "
              "show its coverage beside the model's: what random filters of the same weights earn on this data.")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), envvar="CIRCUITS_CATALOG",
              help="Store the labels, with their evidence, in this catalog (also $CIRCUITS_CATALOG).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (docs/labels.md).")
@normalize_option
@device_option
def label(model, weights, input_shape, layers, data, bar, show_all, control, catalog_path, as_json, normalize,
          device):  # fmt: skip
    """Name the neurons of MODEL from the concepts of the toy world.

    Every neuron's score on an image is its strongest pre-activation in it; each concept (a class, a
    facing, a line angle, their ANDs, and ORs of one factor) gets that score's AUROC for the concept's
    images against the rest. A neuron is labelled with the simplest concept that reaches --bar. Beside it:
    the IoU of its top-0.5% map with the concept's masks, and a control (the best AUROC any concept reaches
    once the images' factors are shuffled). A neuron that responds to both facings of a class, each on its
    own above the bar and without telling them apart, is labelled as the union:
    'fish AND (facing=left OR facing=right)'.

    \b
    Examples:
      circuits label zoo:facing-cnn
      circuits label planted:union --json
      circuits label zoo:plain-cnn --layer conv3 --all
      circuits label zoo:plain-cnn --catalog catalog.db
    """
    from circuits.data import model_labelled
    from circuits.labels.label import default_data, label_neurons, shuffled_weight_control
    from circuits.progress import progress_bar

    if catalog_path:
        from circuits.catalog import check_writable

        check_writable(catalog_path)
    loaded = load_model(model, weights, input_shape)
    data = data or default_data(loaded)
    probe = model_labelled(data, loaded, normalize, masks=True)
    with progress_bar("labelling", unit="img") as bar_:
        result = label_neurons(loaded.module, data=probe, layers=list(layers) or None, bar=bar, device=device,
                               progress=bar_.update)  # fmt: skip
    shuffled = None
    if control:
        shuffled = shuffled_weight_control(loaded.module, data=probe, layers=list(layers) or None, bar=bar,
                                           device=device).coverage()  # fmt: skip
    arguments = {"model": model, "weights": weights, "input_shape": input_shape, "layers": list(layers),
                 "data": data, "bar": bar, "all": show_all, "control": control, "normalize": normalize}  # fmt: skip
    if catalog_path:
        counts = _record(catalog_path, loaded, result)
    shown = result.neurons if show_all else result.labelled()
    if as_json:
        echo_json({"model": loaded.spec, "data": result.data, "bar": result.bar, "concepts": result.concepts,
                   "coverage": result.coverage(), **({"control_coverage": shuffled} if control else {}),
                   "neurons": [n.to_dict() for n in shown]},
                  arguments, loaded.weights_hash)  # fmt: skip
        return
    _print(result, shown, shuffled)
    if catalog_path:
        click.echo(f"catalog {catalog_path}: {counts['written']} labels shown, {counts['kept_user']} kept behind a "
                   f"person's label, {counts['unchanged']} unchanged")  # fmt: skip


def _record(catalog_path, loaded, result) -> dict:
    from circuits.catalog import Catalog

    rows = [{"neuron": n.neuron, "label": n.label, "score": round(n.score, 4), "concept": n.concept,
             "evidence": result.evidence(n)} for n in result.labelled()]  # fmt: skip
    with Catalog(catalog_path) as catalog:
        with catalog.transaction():
            add_loaded_model(catalog, loaded)
            return catalog.add_labels(loaded.weights_hash, rows, model_name=loaded.spec)


def _print(result, shown, shuffled=None) -> None:
    click.echo(f"{len(result.labelled())} of {len(result.neurons)} neurons labelled (AUROC >= {result.bar}, "
               f"{result.concepts} concepts of {result.data})")  # fmt: skip
    for layer, cover in result.coverage().items():
        beside = "" if shuffled is None else f"   shuffled weights: {shuffled[layer]['labelled']} / {cover['neurons']}"
        click.echo(f"  {layer:<14} {cover['labelled']:>4} / {cover['neurons']:<4} labelled{beside}")
    if not shown:
        click.echo("no neuron reaches the bar: nothing here is a detector of a known concept on this data")
        return
    click.echo(f"{'neuron':<16} {'AUROC':>6} {'IoU':>6} {'control':>7}  label")
    for n in shown:
        iou = "     -" if n.iou is None else f"{n.iou:6.3f}"
        text = n.label if n.labelled else f"({n.words}: under the bar)"
        cases = "" if not n.cases else "   cases " + ", ".join(f"{k} {v:.3f}" for k, v in n.cases.items())
        click.echo(f"{n.neuron:<16} {n.score:6.3f} {iou} {n.control:7.3f}  {text}{cases}")


@click.command()
@model_options
@click.option("--concept", metavar="CONCEPT", help="A toy-world concept: 'facing=left', 'fish AND facing=left', "
              "'wedge AND (facing=left OR facing=right)', 'angle=45'.")  # fmt: skip
@click.option("--examples", type=click.Path(exists=True), metavar="DIR",
              help="A folder of your own example images (or a .npy/.pt tensor), ranked against --data.")  # fmt: skip
@click.option("--data", metavar="SPEC", help="The images to compare against (with --concept: the toy world to "
              "pick the concept's images from). Default: the model's toy-world task, 2000 images, seed 1; with "
              "--examples any spec: toyworld, noise, photos[:N][:SEED], a folder (docs/data.md).")  # fmt: skip
@click.option("--layer", "layers", multiple=True, metavar="LAYER", help="Only this layer (repeatable).")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 100_000), help="Neurons to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (docs/labels.md).")
@normalize_option
@device_option
def find(model, weights, input_shape, concept, examples, data, layers, top, as_json, normalize, device):
    """Rank the neurons of MODEL by how selectively they respond to a concept or to your example images.

    Each neuron's score is the AUROC of its strongest pre-activation in an image for the concept's images
    (or your examples) against the others (or --data): 1 means every example outranks every background
    image, 0.5 chance. Take the best straight to `circuits extract MODEL --neuron ...`.

    \b
    Examples:
      circuits find zoo:plain-cnn --concept "facing=left"
      circuits find zoo:plain-cnn --concept "fish AND facing=left" --json
      circuits find zoo:plain-cnn --examples my_left_facing_images/
      circuits find model.pt --input-shape 3,64,64 --examples cats/ --data backgrounds/
    """
    from circuits.data import model_data, model_labelled
    from circuits.errors import UsageError
    from circuits.labels.find import WEAK, find_neurons
    from circuits.labels.label import default_data

    if (concept is None) == (examples is None):
        raise UsageError("give --concept 'facing=left' or --examples DIR (one of the two)")
    loaded = load_model(model, weights, input_shape)
    data = data or default_data(loaded)
    if concept is not None:
        mine, background = None, model_labelled(data, loaded, normalize)
    else:  # both normalised alike, so the ranking compares like with like
        mine, background = model_data(examples, loaded, normalize), model_data(data, loaded, normalize)
    found = find_neurons(loaded.module, concept=concept, examples=mine, data=background, layers=list(layers) or None,
                         top=top, device=device)  # fmt: skip
    query = concept if concept is not None else f"examples {examples}"
    arguments = {"model": model, "weights": weights, "input_shape": input_shape, "concept": concept,
                 "examples": examples, "data": data, "layers": list(layers), "top": top, "normalize": normalize}  # fmt: skip
    if as_json:
        echo_json({"model": loaded.spec, "query": query, "positives": found.positives,
                   "negatives": found.negatives, "neurons": found.neurons}, arguments, loaded.weights_hash)  # fmt: skip
        return
    click.echo(f"{query}: {found.positives} images against {found.negatives} of {data}")
    for rank, row in enumerate(found.neurons, 1):
        click.echo(f"{rank:>4}  {row['neuron']:<16} AUROC {row['score']:.3f}")
    if found.weak:
        click.echo(f"the best AUROC is under {WEAK}: no neuron separates these images well; the ranking is the "
                   "best there is")  # fmt: skip
