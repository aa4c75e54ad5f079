"""`circuits lesion`: silence neurons and measure what the network's decisions lose."""

import click

from circuits.cli._common import echo_json, model_options, normalize_option


@click.command()
@model_options
@click.option("--neurons", required=True, metavar="L:C[,L:C...]", help="The neurons to silence, comma-separated.")
@click.option("--mode", type=click.Choice(["zero", "mean"]), default="zero", show_default=True,
              help="zero silences them; mean clamps each to its average map over the images.")  # fmt: skip
@click.option("--data", metavar="SPEC",
              help="Images to measure on [default: 2,000 held-out images of a zoo or planted model's task, with "
                   "their labels; any other model needs its own].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@normalize_option
def lesion(model, weights, input_shape, neurons, mode, data, as_json, normalize):
    """Silence NEURONS of MODEL and compare its output with the intact network's on the same images: the
    share of images whose predicted class changes, each class logit's mean change, and (on toy-world
    images) task accuracy with and without them.

    \b
    Examples:
      circuits lesion zoo:plain-cnn --neurons conv3:7
      circuits lesion zoo:plain-cnn --neurons conv3:0,conv3:1,conv3:3 --mode mean --json
    """
    from circuits.cli._common import load_model
    from circuits.graph.lesion import lesion as run_lesion
    from circuits.program import require_held_out
    from circuits.program.verify import load_verify_data

    names = [n.strip() for n in neurons.split(",") if n.strip()]
    loaded = load_model(model, weights, input_shape)
    spec = require_held_out(loaded, data)
    images = load_verify_data(spec, loaded, normalize)
    result = run_lesion(loaded, names, getattr(images, "images", images), mode=mode)
    classes = loaded.info.get("classes") or [str(k) for k in range(result.logits.shape[1])]
    labels = getattr(images, "labels", None)
    intact, lesioned = result.accuracy(labels) if labels is not None else (None, None)
    payload = {"model": loaded.spec, "neurons": result.neurons, "mode": mode, "data": spec, "images": len(result.logits),
               "changed": result.changed, "effect": dict(zip(classes, map(float, result.effect))),
               "accuracy": None if labels is None else {"intact": intact, "lesioned": lesioned}}  # fmt: skip
    if as_json:
        echo_json(payload, {"model": model, "weights": weights, "neurons": names, "mode": mode, "data": spec,
                            **({"normalize": normalize} if normalize else {})}, loaded.weights_hash)  # fmt: skip
        return
    lines = [f"{', '.join(result.neurons)} ({mode}) on {payload['images']:,} images ({spec}): the predicted class "
             f"changes on {result.changed:.1%}"]  # fmt: skip
    if labels is not None:
        lines.append(f"accuracy {intact:.2%} intact, {lesioned:.2%} lesioned")
    lines.append("mean logit change: " + ", ".join(f"{k} {v:+.3f}" for k, v in payload["effect"].items()))
    click.echo("\n".join(lines))
