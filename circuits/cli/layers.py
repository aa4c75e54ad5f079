"""`circuits layers`: the neuron layers of a model and the linear paths that join them."""

import click

from circuits.cli._common import echo_json, load_model, model_options


@click.command()
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def layers(model, weights, input_shape, as_json):
    """List the neuron layers of MODEL: name, channels, spatial size, and what feeds each one.

    A neuron layer is the input, the output of a nonlinearity, a gate, a channel concat of layers,
    or a model output; a neuron is LAYER:CHANNEL.

    \b
    Examples:
      circuits layers zoo:plain-cnn
      circuits layers mypkg.nets:resnet18 --weights r18.pt --input-shape 3,224,224 --json
    """
    from circuits.graph import build_graph

    loaded = load_model(model, weights, input_shape)
    graph = build_graph(loaded)
    if as_json:
        echo_json({"model": loaded.spec, **graph.to_dict()}, {"model": model, "weights": weights,
                  "input_shape": input_shape}, graph.weights_hash)  # fmt: skip
        return
    from circuits.formatting import layers_table

    click.echo(layers_table(graph))
