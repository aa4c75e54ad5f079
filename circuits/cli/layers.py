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
    rows = [("layer", "kind", "channels", "spatial", "nonlinearity", "fed by (through)")]
    for layer in graph.layers.values():
        fed = ", ".join(layer.sources)
        if layer.path_ops:
            fed += f"  ({', '.join(layer.path_ops)})"
        spatial = "x".join(map(str, layer.spatial)) or "-"
        kind = layer.kind + (" (output)" if layer.is_output and layer.kind != "output" else "")
        rows.append((layer.name, kind, str(layer.channels), spatial, layer.nonlinearity or "-", fed or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5])
