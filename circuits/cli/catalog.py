"""``circuits catalog``: read, label, merge, export and browse the shared catalog.

Each subcommand parses its options, calls one method of :class:`circuits.catalog.Catalog`, and prints.
"""

from __future__ import annotations

import functools
import json
import os

import click

from circuits.cli._common import echo_json

KINDS = ("models", "circuits", "neurons", "motifs", "instances", "modules", "families")


def catalog_options(json_flag: bool = True):
    """--catalog PATH (or $CIRCUITS_CATALOG, default ./catalog.db), and --json where output is data."""

    def decorate(func):
        @click.option("--catalog", "catalog_path", envvar="CIRCUITS_CATALOG", default="catalog.db",
                      show_default=True, type=click.Path(dir_okay=False),
                      help="Catalog file (or set CIRCUITS_CATALOG).")
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)

        if json_flag:
            wrapper = click.option("--json", "as_json", is_flag=True, help="Print JSON with provenance.")(wrapper)
        return wrapper

    return decorate


def _open(path, create=False, write=False):
    """Read commands open the catalog read-only (a shared mount, a downloaded file); writes check first."""
    from circuits.catalog import Catalog, check_writable

    if write:
        check_writable(path)
    return Catalog(path, create=create, readonly=not write)


def _table(rows: list[dict], columns: list[str]) -> None:
    click.echo("\t".join(columns))
    for row in rows:
        click.echo("\t".join("" if row.get(c) is None else str(row[c]) for c in columns))


@click.group()
def catalog():
    """The shared catalog of models, neurons, circuits, motifs and modules (one SQLite file).

    \b
    Every command takes --catalog PATH (default ./catalog.db, or $CIRCUITS_CATALOG). stats, list,
    show, search, export and serve only read it, so a read-only file will do.
    `circuits extract ... --catalog PATH` and `circuits motifs ... --catalog PATH` write to it.
    """


@catalog.command()
@catalog_options()
def stats(catalog_path, as_json):
    """Row counts per table.

    \b
    Example:
      circuits catalog stats --catalog lab.db
    """
    with _open(catalog_path) as cat:
        result = cat.stats()
    if as_json:
        echo_json(result, {"catalog": catalog_path})
        return
    click.echo(f"{result['path']} (schema version {result['catalog_schema_version']})")
    for table, count in result["counts"].items():
        click.echo(f"{table:22} {count}")
    click.echo(f"{'labelled neurons':22} {result['labelled_neurons']}")
    click.echo(f"{'  by a person (user)':22} {result['user_labelled_neurons']}")
    click.echo(f"{'  automatic':22} {result['auto_labelled_neurons']}")


@catalog.command(name="list")
@click.option("--kind", type=click.Choice(KINDS), default="circuits", show_default=True, help="What to list.")
@catalog_options()
def list_(kind, catalog_path, as_json):
    """One line per entry of a kind.

    \b
    Example:
      circuits catalog list --kind motifs
    """
    with _open(catalog_path) as cat:
        rows = cat.list(kind)
    if as_json:
        echo_json({"kind": kind, "items": rows}, {"catalog": catalog_path, "kind": kind})
        return
    columns = list(rows[0]) if rows else []
    if columns:
        _table([{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()} for r in rows], columns)


@catalog.command()
@click.argument("id")
@click.option("--emit", "emit_path", type=click.Path(dir_okay=False),
              help="Rebuild the circuit (ID: a circuit or module) as a Python module OUT.py, from the catalog alone.")  # fmt: skip
@click.option("--render", "render_path", type=click.Path(dir_okay=False),
              help="Draw the circuit (ID: a circuit or module) to OUT.svg or OUT.png, from the catalog alone.")  # fmt: skip
@catalog_options()
def show(id, emit_path, render_path, catalog_path, as_json):
    """Show one entry in full, as JSON; with --emit / --render, rebuild a stored circuit as code or a diagram.

    ID is a circuit, model, motif instance, module or family id (or a unique prefix of one), a model
    name, a motif id such as union/reflect, or a neuron as MODEL/LAYER:CHANNEL. A stored circuit holds
    everything emit and render need, so no model is loaded.

    \b
    Examples:
      circuits catalog show 3f2a9c
      circuits catalog show zoo:plain-cnn/conv3:12
      circuits catalog show 3f2a9c --emit conv3_12.py --render conv3_12.svg
    """
    if emit_path or render_path:
        _rebuild(id, emit_path, render_path, catalog_path)
        return
    with _open(catalog_path) as cat:
        item = cat.show(id)
    if as_json:
        echo_json({"item": item}, {"catalog": catalog_path, "id": id})
    else:
        click.echo(json.dumps(item, indent=2))


def _rebuild(ref, emit_path, render_path, catalog_path):
    from circuits.cli._common import check_writable

    check_writable(emit_path, "--emit", (".py",), keep=catalog_path)
    check_writable(render_path, "--render", (".svg", ".png"), keep=catalog_path)
    from circuits.pipeline import emit_stored, stored

    with _open(catalog_path) as cat:
        circuit = stored(cat, ref)
        module, how = emit_stored(cat, ref) if emit_path else (None, None)
    if render_path:
        from circuits.render import render_circuit

        render_circuit(circuit, render_path)
        click.echo(f"diagram written to {render_path}", err=True)
    if module is not None:
        module.write(emit_path)
        click.echo(f"module written to {emit_path}; " + {
            "measured": "its stored faithfulness is in it",
            "stored": "it is the stored module as it was emitted",
            "rebuilt": f"the literal form, rebuilt from the circuit: measure it with `circuits verify {emit_path} --model MODEL`",
        }[how], err=True)  # fmt: skip


@catalog.command()
@click.argument("text")
@click.option("--limit", type=click.IntRange(1, 2**63 - 1), default=50, show_default=True, help="Most results to print.")
@catalog_options()
def search(text, limit, catalog_path, as_json):
    """Full-text search of neuron labels and notes, motif descriptions and module code.

    Every word of TEXT must match.

    \b
    Example:
      circuits catalog search "curve detector"
    """
    with _open(catalog_path) as cat:
        results = cat.search(text, limit=limit)
    if as_json:
        echo_json({"query": text, "results": results}, {"catalog": catalog_path, "text": text, "limit": limit})
        return
    for row in results:
        click.echo(f"{row['kind']}\t{row['id']}\t{(row['text'] or '').splitlines()[0] if row['text'] else ''}")


@catalog.command()
@click.argument("model")
@click.argument("neuron", metavar="LAYER:CH")
@click.argument("text")
@click.option("--notes", help="Free-text notes kept with the neuron (searchable).")
@click.option("--source", default="user", show_default=True, help="Who proposes the label; user labels win merges.")
@catalog_options()
def label(model, neuron, text, notes, source, catalog_path, as_json):
    """Label a neuron of MODEL (name, id or id prefix).

    \b
    Example:
      circuits catalog label zoo:plain-cnn conv3:12 "curve detector" --notes "fires on 30-degree arcs"
    """
    with _open(catalog_path, write=True) as cat:
        row = cat.label(model, neuron, text, source=source, notes=notes)
    if as_json:
        echo_json({"neuron": row}, {"catalog": catalog_path, "model": model, "neuron": neuron, "text": text,
                                    "notes": notes, "source": source})
    elif row["label"] == text.strip():
        click.echo(f"labelled {model} {neuron}: {row['label']}")
    else:
        click.echo(f"recorded in label history; {model} {neuron} keeps the {row['label_source']} label: {row['label']}")


@catalog.command()
@click.argument("other", type=click.Path(dir_okay=False))
@catalog_options()
def merge(other, catalog_path, as_json):
    """Merge a colleague's catalog OTHER into this one (OTHER is only read).

    Content-addressed rows are unioned; a neuron keeps the newest user label (labels from tools rank
    below), and every label stays in its history with its source.

    \b
    Example:
      circuits catalog merge ~/shared/alice.db --catalog lab.db
    """
    with _open(catalog_path, create=True, write=True) as cat:
        added = cat.merge(other)
    if as_json:
        echo_json({"added": added}, {"catalog": catalog_path, "other": other})
        return
    for table, count in added.items():
        click.echo(f"{table:22} +{count}")


@catalog.command()
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "sql"]), default="json", show_default=True)
@click.option("--table", help="For CSV: the one table to write.")
@click.option("--output", "-o", type=click.Path(), help="File to write (for CSV without --table: a directory).")
@catalog_options(json_flag=False)
def export(fmt, table, output, catalog_path):
    """Dump the catalog as JSON, CSV or an SQL script, rows in key order.

    \b
    Examples:
      circuits catalog export --format json > catalog.json
      circuits catalog export --format csv --table neurons
      circuits catalog export --format csv --output dump/     # one CSV per table
      circuits catalog export --format sql | sqlite3 copy.db
    """
    from pathlib import Path

    from circuits.catalog import schema
    from circuits.cli._common import check_writable
    from circuits.errors import UsageError
    from circuits.pyfiles import write_atomic

    folder = fmt == "csv" and table is None
    if folder and output is None:
        raise UsageError("CSV holds one table: pass --table TABLE, or --output DIR for one file per table.")
    if folder and os.path.exists(output) and not os.path.isdir(output):
        raise UsageError(f"--output {output}: a file is there; CSV of every table needs a folder")
    if folder:
        check_writable(os.path.join(output, "x.csv") if os.path.isdir(output) else output, "--output")
    elif output is not None:
        if os.path.isdir(output):
            raise UsageError(f"--output {output} is a folder: give a file name")
        check_writable(output, "--output")
    with _open(catalog_path) as cat:
        if folder:
            os.makedirs(output, exist_ok=True)
            for name in schema.TABLES:
                write_atomic(Path(output) / f"{name}.csv", cat.export("csv", name).encode())
            return
        if fmt == "json":
            from circuits.provenance import dumps, envelope

            text = dumps(envelope(cat.export("json"), {"catalog": catalog_path, "format": fmt})) + "\n"
        else:
            text = cat.export(fmt, table)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomic(Path(output), text.encode())


@catalog.command()
@catalog_options()
def upgrade(catalog_path, as_json):
    """Upgrade a catalog of an older schema version in place, after copying it to PATH.bak-vN.

    Read commands open a catalog read-only, so they never upgrade it; this does (as does any write).

    \b
    Example:
      circuits catalog upgrade --catalog lab.db
    """
    from circuits.catalog import inspect_file

    before = inspect_file(catalog_path)
    with _open(catalog_path, write=True) as cat:
        after = cat.stats()["catalog_schema_version"]
    if as_json:
        echo_json({"from": before, "to": after}, {"catalog": catalog_path})
    elif before == after:
        click.echo(f"{catalog_path} is already at schema version {after}")
    else:
        click.echo(f"upgraded {catalog_path} from schema version {before} to {after}")


@catalog.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@catalog_options(json_flag=False)
def serve(port, catalog_path):
    """Browse the catalog in datasette on http://127.0.0.1:PORT (loopback only).

    Canned queries include "motifs found in more than one model", "labelled neurons", "strongest
    edges into a neuron" and "pictures of neurons". Needs datasette (pip install 'datasette>=0.64,<1');
    pictures show as images with datasette-render-images (pip install 'datasette-render-images>=0.4,<1'),
    otherwise as download links.

    \b
    Example:
      circuits catalog serve --catalog lab.db --port 8001
    """
    import tempfile

    from circuits.catalog import serve as serving
    from circuits.catalog.store import why_unwritable

    with _open(catalog_path):
        pass  # validates the file (read-only) before datasette sees it
    with tempfile.TemporaryDirectory() as tmp:
        metadata_file = os.path.join(tmp, "metadata.json")
        with open(metadata_file, "w", encoding="utf-8") as handle:
            json.dump(serving.metadata(catalog_path), handle)
        argv = serving.command(catalog_path, metadata_file, port, immutable=why_unwritable(catalog_path) is not None)
        _check_port_free(port)
        note = serving.missing_images_plugin()
        if note is not None:
            click.echo(f"note: {note}", err=True)
        click.echo(f"serving {catalog_path} on http://127.0.0.1:{port} (Ctrl-C to stop)", err=True)
        code = _run_until_stopped(argv)
    if code not in (0, None):
        from circuits.errors import CircuitsError

        raise CircuitsError(f"datasette stopped with exit code {code}: see its messages above")


def _check_port_free(port: int) -> None:
    """A taken port is refused before datasette starts (it would fail after we said we were serving)."""
    import socket

    from circuits.errors import UsageError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise UsageError(f"port {port} on 127.0.0.1 is taken: pick another with --port") from None


def _run_until_stopped(argv) -> int | None:
    """Run datasette; Ctrl-C or SIGTERM to us stops it too (it never outlives the command)."""
    import signal
    import subprocess

    proc = subprocess.Popen(argv)

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
