"""`circuits extract`: a neuron's circuit as a readable tree, JSON, and a diagram."""

import os

import click

from circuits.cli._common import (
    check_writable,
    device_option,
    echo_json,
    load_model,
    model_options,
    normalize_option,
)


@click.command()
@model_options
@click.option("--neuron", required=True, metavar="LAYER:CH", help="The target neuron, e.g. conv3:5.")
@click.option("--depth", default=2, show_default=True, type=int, help="How many layers back to walk.")
@click.option("--top-k", default=8, show_default=True, type=int, help="Strongest inputs kept per neuron.")
@click.option("--method", type=click.Choice(["weights", "attribution"]), default="weights", show_default=True,
              help="Rank inputs by weight strength, or by direct attribution on --data (the neuron's other inputs held at their values).")  # fmt: skip
@click.option("--data", metavar="SPEC", help="Probe images: toyworld[:N][:SEED], noise:N, a folder, .npy or .pt.")
@click.option("--threshold", type=float, help="Drop edges whose |weight| is below this.")
@click.option("--through", metavar="LAYER", help="First step jumps straight to LAYER with expanded weights.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in the README).")
@click.option("--emit", "emit_path", type=click.Path(dir_okay=False),
              help="Reverse-compile the circuit into OUT.py and measure its faithfulness on --data (without it: "
                   "held-out toy-world images, for zoo and planted models only).")  # fmt: skip
@click.option("--simplify", "simplify", is_flag=True,
              help="With --emit: collapse equivariant families and unions where that keeps R² within 0.01.")  # fmt: skip
@click.option("--dropped", type=click.Choice(["best", "mean", "zero"]), default="best", show_default=True,
              help="With --emit: replace the inputs --top-k drops by their mean contribution on the probe data "
                   "(a constant map per neuron, added to its bias), or leave them out (zero).")  # fmt: skip
@click.option("--render", "render_path", type=click.Path(dir_okay=False), help="Write a diagram: OUT.svg or OUT.png.")
@click.option("--pictures", "with_pictures", is_flag=True,
              help="With --render: draw each neuron's optimised picture (its receptive field) inside its node.")  # fmt: skip
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), envvar="CIRCUITS_CATALOG",
              help="Record the circuit in this catalog (also $CIRCUITS_CATALOG).")  # fmt: skip
@normalize_option
@device_option
def extract(model, weights, input_shape, neuron, depth, top_k, method, data, threshold, through, as_json,
            emit_path, simplify, dropped, render_path, with_pictures, catalog_path, normalize, device):  # fmt: skip
    """Extract the circuit that feeds one neuron of MODEL.

    Walks back from --neuron, keeping the --top-k strongest inputs of each neuron (by |strength|,
    negative ones kept and marked), --depth layers deep, through concat and residual paths.
    A strength is the signed sum of the spatial kernel (docs/neuron-graph.md).

    \b
    Examples:
      circuits extract zoo:plain-cnn --neuron conv3:0
      circuits extract zoo:plain-cnn --neuron conv3:0 --depth 3 --top-k 4 --render conv3_0.svg
      circuits extract zoo:plain-cnn --neuron conv3:0 --top-k 3 --render conv3_0.png --pictures
      circuits extract planted:union --neuron union:0 --json
      circuits extract zoo:plain-cnn --neuron conv3:0 --method attribution --data toyworld:256
      circuits extract zoo:plain-cnn --neuron conv3:0 --emit conv3_0.py   # then: python conv3_0.py
      circuits extract zoo:plain-cnn-s0 --neuron conv3:7 --emit conv3_7.py --simplify
    """
    from circuits.extraction import extract as run_extract
    from circuits.formatting import circuit_tree
    from circuits.progress import progress_bar

    if simplify and not emit_path:
        from circuits.errors import UsageError

        raise UsageError("--simplify rewrites the emitted module: pass --emit OUT.py too")
    if with_pictures and not render_path:
        from circuits.errors import UsageError

        raise UsageError("--pictures draws pictures into the diagram: pass --render OUT.svg too")
    check_writable(emit_path, "--emit", (".py",))
    check_writable(render_path, "--render", (".svg", ".png"))
    if catalog_path:
        from circuits.catalog import check_writable as check_catalog

        check_catalog(catalog_path)  # before the model is loaded and traced
    from circuits.graph import build_graph

    loaded = load_model(model, weights, input_shape)
    if emit_path:
        from circuits.compile.faithfulness import probe_spec

        measure_on = probe_spec(loaded, data)  # a model from outside the toy world must be given its own images
    graph = build_graph(loaded)  # traced once, shared by extract, emit, verify and record
    if catalog_path and os.path.isfile(catalog_path):  # a person's labels there win; a tool's fill the gaps
        from circuits.catalog import Catalog

        with Catalog(catalog_path, readonly=True) as catalog:
            for node, (text, source) in catalog.neuron_labels(loaded.weights_hash).items():
                if source == "user" or node not in graph.labels:
                    graph.labels[node] = text
    probe = None
    if data is not None:
        from circuits.data import model_data

        probe = model_data(data, loaded, normalize)
    with progress_bar(desc="tracing", unit="neuron") as bar:
        circuit = run_extract(graph, neuron, depth=depth, top_k=top_k, method=method, data=probe,
                              threshold=threshold, through=through, progress=bar.update, device=device)  # fmt: skip
    payload = circuit.to_json()
    payload["model"] = loaded.spec
    arguments = {"model": model, "weights": weights, "input_shape": input_shape, "neuron": neuron, "depth": depth,
                 "top_k": top_k, "method": method, "data": data, "threshold": threshold, "through": through,
                 **({"simplify": True} if simplify else {}), **({"dropped": dropped} if emit_path else {}),
                 **({"normalize": normalize} if normalize else {})}  # fmt: skip
    if render_path:
        from circuits.render import render_circuit

        pictures = None
        if with_pictures:
            from circuits.featvis.gallery import node_pictures

            pictures = node_pictures(graph, list(circuit.nodes), device=device)
        render_circuit(circuit, render_path, pictures)
    compiled = None
    if emit_path:
        compiled = _compile(circuit, loaded, graph, measure_on, probe, simplify, dropped, normalize, device)
        compiled.write(emit_path)
        payload["emitted"] = {"path": emit_path, "faithfulness": compiled.report}
        if simplify:
            payload["emitted"]["simplifications"] = compiled.simplifications
    if catalog_path:
        from circuits.catalog import Catalog
        from circuits.pipeline import record

        with Catalog(catalog_path) as catalog:
            record(catalog, graph, circuit, compiled, parameters=arguments, architecture=type(loaded.module).__name__)
    if as_json:
        echo_json(payload, arguments, loaded.weights_hash)
        return
    click.echo(circuit_tree(payload))
    if render_path:
        click.echo(f"diagram written to {render_path}", err=True)
    if compiled:
        from circuits.formatting import faithfulness_summary

        click.echo(f"module written to {emit_path}; faithfulness:\n{faithfulness_summary(compiled.report)}", err=True)
        for s in compiled.simplifications or []:
            if s["kept"]:
                click.echo(f"kept: {s['kind']} {s['form']} of {', '.join(s['members'])}: {s['reason']}", err=True)


def _compile(circuit, loaded, graph, spec, probe, simplify, dropped, normalize, device=None):
    """Emit the circuit (with its collapsed forms, if asked) and measure it on ``spec``: --data, or the
    held-out toy-world images for a toy-world model (``probe`` holds --data's images, already loaded)."""
    from circuits.data import model_data
    from circuits.pipeline import compile_circuit

    data = probe if probe is not None else model_data(spec, loaded, normalize)
    return compile_circuit(circuit, graph, data, data_spec=spec, simplify=simplify, dropped=dropped, device=device)
