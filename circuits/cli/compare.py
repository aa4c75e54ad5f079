"""`circuits diff`: compare two models of one architecture, neuron by neuron."""

import click

from circuits.cli._common import device_option, echo_json, load_model, normalize_option


@click.command()
@click.argument("model_a", metavar="MODEL_A")
@click.argument("model_b", metavar="MODEL_B")
@click.option("--weights-a", type=click.Path(dir_okay=False), help="state_dict for MODEL_A (weights_only=True).")
@click.option("--weights-b", type=click.Path(dir_okay=False), help="state_dict for MODEL_B: a tampered or "
              "fine-tuned copy of the same architecture.")  # fmt: skip
@click.option("--input-shape", metavar="C,H,W", help="Example input shape, if the models do not say.")
@click.option("--data", metavar="SPEC", help="Probe images both models see [default: toyworld:256:12345 for zoo "
              "and planted models; any other model needs its own].")  # fmt: skip
@click.option("--layer", "layers", multiple=True, metavar="LAYER", help="Compare only these layers (repeatable).")
@click.option("--motifs/--no-motifs", default=True, show_default=True,
              help="Also compare unions and equivariant families (from weights).")  # fmt: skip
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1), help="Rows shown per table.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in docs/compare.md).")
@normalize_option
@device_option
def diff(model_a, model_b, weights_a, weights_b, input_shape, data, layers, motifs, top, as_json, normalize, device):
    """Match the neurons of MODEL_B to MODEL_A's and rank what changed.

    Neurons are matched layer by layer (the identity where it holds, else an optimal assignment on
    activations and input weights), then scored by how far their function (activation correlation with
    their partner) and their input weights moved beyond the rest of their layer (robust z-scores). The
    naive baseline, neurons ranked by the relative change of their input weights at the same index, is
    shown beside it.

    \b
    Examples:
      circuits diff zoo:plain-cnn-s0 zoo:plain-cnn-s0 --weights-b tampered.pt
      circuits diff zoo:plain-cnn-s0 zoo:plain-cnn-s1 --data toyworld:512 --json
      circuits diff my_net.py:Net my_net.py:Net --weights-a before.pt --weights-b after.pt --data photos:256
    """
    from circuits.compare import diff as run
    from circuits.compile.faithfulness import probe_spec
    from circuits.data import model_data

    a = load_model(model_a, weights_a, input_shape)
    b = load_model(model_b, weights_b, input_shape)
    spec = probe_spec(a, data)
    result = run(a, b, model_data(spec, a, normalize), layers=list(layers) or None, motifs=motifs, device=device)
    result["data"] = spec
    if as_json:
        arguments = {"model_a": model_a, "model_b": model_b, "weights_a": weights_a, "weights_b": weights_b,
                     "input_shape": input_shape, "data": spec, "layers": list(layers), "motifs": motifs,
                     "normalize": normalize}  # fmt: skip
        echo_json(result, arguments, {"a": a.weights_hash, "b": b.weights_hash})
        return
    from circuits.formatting import diff_report

    click.echo(diff_report(result, top))
