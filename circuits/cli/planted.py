"""``circuits planted``: list the ready planted-circuit specs and build one into a weights file.

A thin skin over :mod:`circuits.planted`; torch is imported only inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import click

from circuits.cli._common import echo_json


@click.group()
def planted():
    """Networks whose circuits are known exactly (oracles for extract and motifs).

    \b
    Examples:
      circuits planted list
      circuits planted build union -o union.pt
      circuits layers planted:union
    """


@planted.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (name, description, input_shape, layers).")
def list_(as_json):
    """List the ready specs; load one anywhere as planted:NAME.

    \b
    Example:
      circuits planted list --json
    """
    from circuits.planted import get_spec, names

    rows = []
    for name in names():
        spec = get_spec(name)
        rows.append(
            {
                "name": name,
                "description": spec.description,
                "input_shape": list(spec.input_shape),
                "layers": {layer: _neuron_names(spec, layer) for layer, _ in spec.neuron_layers()},
            }
        )
    if as_json:
        echo_json({"planted": rows}, {"command": "planted list"})
        return
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        click.echo(f"{row['name']:<{width}}  {row['description']}")


def _neuron_names(spec, layer):
    return [n.name for n in spec.layer(layer).neurons]


@planted.command("build")
@click.argument("name", metavar="NAME")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the state_dict; the spec goes beside it as OUTPUT.spec.json.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (paths, input_shape, labels).")
def build(name, output, as_json):
    """Compile planted spec NAME (a ready name, or a .yaml/.json spec file) and save its weights.

    Writes OUTPUT (torch.save of the state_dict) and OUTPUT.spec.json (the spec, loadable with
    circuits.planted.load_spec). Run other commands on it as planted:NAME --weights OUTPUT.

    \b
    Example:
      circuits planted build union -o union.pt
      circuits layers planted:union --weights union.pt
    """
    import torch

    from circuits.models.loaded import weights_hash
    from circuits.planted import compile, get_spec, load_spec

    spec = load_spec(name) if Path(name).suffix.lower() in {".yaml", ".yml", ".json"} else get_spec(name)
    model = compile(spec)
    out = Path(output)
    sidecar = Path(f"{output}.spec.json")
    if out.parent and not out.parent.exists():
        from circuits.errors import UsageError

        raise UsageError(f"cannot write '{output}': folder '{out.parent}' does not exist; create it first")
    import io

    from circuits.pyfiles import write_atomic

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_atomic(out, buffer.getvalue())  # a failure leaves the old file or none, never half of one
    write_atomic(sidecar, (spec.to_json() + "\n").encode())
    sha = weights_hash(model)
    if as_json:
        payload = {
            "name": spec.name,
            "state_dict": str(out),
            "spec": str(sidecar),
            "input_shape": list(spec.input_shape),
            "labels": spec.labels(),
        }
        echo_json(payload, {"command": "planted build", "name": name, "output": output}, sha)
        return
    click.echo(f"wrote {out} and {sidecar} ({len(spec.labels())} neurons, weights sha256 {sha[:12]})")
