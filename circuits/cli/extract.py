"""`circuits extract`: a neuron's circuit as a readable tree, JSON, and a diagram."""

import click

from circuits.cli._common import check_writable, echo_json, load_model, model_options


@click.command()
@model_options
@click.option("--neuron", required=True, metavar="LAYER:CH", help="The target neuron, e.g. conv3:5.")
@click.option("--depth", default=2, show_default=True, type=int, help="How many layers back to walk.")
@click.option("--top-k", default=8, show_default=True, type=int, help="Strongest inputs kept per neuron.")
@click.option("--method", type=click.Choice(["weights", "attribution"]), default="weights", show_default=True,
              help="Rank inputs by weight strength, or by attribution on --data.")  # fmt: skip
@click.option("--data", metavar="SPEC", help="Probe images: toyworld[:N][:SEED], noise:N, a folder, .npy or .pt.")
@click.option("--threshold", type=float, help="Drop edges whose |weight| is below this.")
@click.option("--through", metavar="LAYER", help="First step jumps straight to LAYER with expanded weights.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in the README).")
@click.option("--emit", "emit_path", type=click.Path(dir_okay=False),
              help="Reverse-compile the circuit into OUT.py and measure its faithfulness on --data.")  # fmt: skip
@click.option("--simplify", "simplify", is_flag=True,
              help="With --emit: collapse equivariant families and unions where that keeps R² within 0.01.")  # fmt: skip
@click.option("--render", "render_path", type=click.Path(dir_okay=False), help="Write a diagram: OUT.svg or OUT.png.")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), envvar="CIRCUITS_CATALOG",
              help="Record the circuit in this catalog (also $CIRCUITS_CATALOG).")  # fmt: skip
def extract(model, weights, input_shape, neuron, depth, top_k, method, data, threshold, through, as_json,
            emit_path, simplify, render_path, catalog_path):  # fmt: skip
    """Extract the circuit that feeds one neuron of MODEL.

    Walks back from --neuron, keeping the --top-k strongest inputs of each neuron (by |strength|,
    negative ones kept and marked), --depth layers deep, through concat and residual paths.
    A strength is the signed sum of the spatial kernel (docs/neuron-graph.md).

    \b
    Examples:
      circuits extract zoo:plain-cnn --neuron conv3:0
      circuits extract zoo:plain-cnn --neuron conv3:0 --depth 3 --top-k 4 --render conv3_0.svg
      circuits extract planted:union --neuron union:0 --json
      circuits extract zoo:plain-cnn --neuron conv3:0 --method attribution --data toyworld:256
      circuits extract zoo:plain-cnn --neuron conv3:0 --emit conv3_0.py   # then: python conv3_0.py
      circuits extract zoo:plain-cnn-s0 --neuron conv3:7 --emit conv3_7.py --simplify
    """
    from circuits.extract import extract as run_extract
    from circuits.extract import to_json
    from circuits.progress import progress_bar

    if simplify and not emit_path:
        from circuits.errors import UsageError

        raise UsageError("--simplify rewrites the emitted module: pass --emit OUT.py too")
    check_writable(emit_path, "--emit")
    check_writable(render_path, "--render")
    loaded = load_model(model, weights, input_shape)
    probe = None
    if data is not None:
        from circuits.data import load_data

        probe = load_data(data, loaded.input_shape)
    with progress_bar(desc="tracing", unit="neuron") as bar:
        circuit = run_extract(loaded, neuron, depth=depth, top_k=top_k, method=method, data=probe,
                              threshold=threshold, through=through, progress=bar.update)  # fmt: skip
    payload = to_json(circuit)
    payload["model"] = loaded.spec
    arguments = {"model": model, "weights": weights, "input_shape": input_shape, "neuron": neuron, "depth": depth,
                 "top_k": top_k, "method": method, "data": data, "threshold": threshold, "through": through,
                 **({"simplify": True} if simplify else {})}  # fmt: skip
    if render_path:
        from circuits.render import render_circuit

        render_circuit(circuit, render_path)
    emitted = None
    if emit_path:
        emitted = _emit_and_verify(circuit, loaded, emit_path, data, simplify)
        payload["emitted"] = {"path": emit_path, "faithfulness": emitted[1]}
        if simplify:
            payload["emitted"]["simplifications"] = emitted[2]
    if catalog_path:
        from circuits.catalog import Catalog

        with Catalog(catalog_path) as catalog:
            with catalog.transaction():
                catalog.add_model(loaded.weights_hash, loaded.spec, architecture=type(loaded.module).__name__,
                                  spec=loaded.spec, parameters=sum(p.numel() for p in loaded.module.parameters()))  # fmt: skip
                circuit_id = catalog.add_circuit(loaded.weights_hash, {**payload, "parameters": arguments})
                if emitted:
                    catalog.add_module(circuit_id, emitted[0], emitted[1])
    if as_json:
        echo_json(payload, arguments, loaded.weights_hash)
        return
    click.echo(format_tree(payload))
    if render_path:
        click.echo(f"diagram written to {render_path}", err=True)
    if emitted:
        from circuits.cli.verify import summary

        click.echo(f"module written to {emit_path}; faithfulness:\n{summary(emitted[1])}", err=True)
        for s in emitted[2] or []:
            if s["kept"]:
                click.echo(f"kept: {s['kind']} {s['form']} of {', '.join(s['members'])}: {s['reason']}", err=True)


def _emit_and_verify(circuit, loaded, emit_path, data_spec, simplify=False):
    """Write the module (with its collapsed forms, if asked), measure it on held-out data, record the
    numbers in it; returns (code, report, simplifications or None)."""
    from pathlib import Path

    from circuits.cli.verify import DEFAULT_DATA
    from circuits.compile import emit, record, verify
    from circuits.data import load_data

    spec = data_spec or DEFAULT_DATA
    data = load_data(spec, loaded.input_shape)
    tried = None
    if simplify:
        from circuits.compile.simplify import circuit_motifs
        from circuits.compile.simplify import simplify as run_simplify

        result = run_simplify(circuit, circuit_motifs(loaded, circuit), loaded, data)
        path, report, tried = result.module.write(emit_path), result.report, result.simplifications
    else:
        path = emit(circuit).write(emit_path)
        report = verify(path, loaded, data)
    record(path, report, spec)
    return Path(path).read_text(), report, tried


def format_tree(payload: dict) -> str:
    """The circuit as an indented tree, strongest inputs first, + / − for the sign."""
    nodes = {n["id"]: n for n in payload["nodes"]}
    inputs: dict[str, list[dict]] = {}
    for e in payload["edges"]:
        inputs.setdefault(e["target"], []).append(e)
    lines = []

    def describe(node_id):
        n = nodes[node_id]
        extra = [n["nonlinearity"]] if n.get("nonlinearity") else []
        if n.get("label"):
            extra.append(f"“{n['label']}”")
        if n.get("pruned_share"):
            extra.append(f"{n['pruned_share']:.0%} of input strength pruned")
        return node_id + (f"  ({'; '.join(extra)})" if extra else "")

    def walk(node_id, prefix, seen):
        for i, e in enumerate(inputs.get(node_id, [])):
            last = i == len(inputs[node_id]) - 1
            sign = "+" if e["weight"] >= 0 else "−"
            branch = "└─ " if last else "├─ "
            again = e["source"] in seen
            lines.append(f"{prefix}{branch}{sign}{abs(e['weight']):.3f}  {describe(e['source'])}" + ("  (above)" if again else ""))
            if not again:
                walk(e["source"], prefix + ("   " if last else "│  "), seen | {e["source"]})

    lines.append(describe(payload["target"]))
    walk(payload["target"], "", {payload["target"]})
    return "\n".join(lines)
