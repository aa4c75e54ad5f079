"""`circuits scan`: catalogue every neuron of many models, shard by shard, here or on a Dask cluster."""

import click

from circuits.cli._common import echo_json


def _split(values) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@click.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option("--layers", "layers", multiple=True, metavar="L[,L...]",
              help="Only these layers (repeatable or comma-separated; each must be in every MODEL). Default: every "
                   "layer with neurons of its own.")  # fmt: skip
@click.option("--what", default="circuits", show_default=True, metavar="circuits,motifs,labels,pictures",
              help="What to record for every neuron of each layer (comma-separated).")  # fmt: skip
@click.option("--catalog", "catalog_path", required=True, type=click.Path(dir_okay=False), envvar="CIRCUITS_CATALOG",
              help="Record into this catalog (also $CIRCUITS_CATALOG); shards it already holds are skipped.")  # fmt: skip
@click.option("--scheduler", metavar="tcp://HOST:8786", help="A running Dask scheduler to send shards to.")
@click.option("--workers", default=0, show_default=True, type=int,
              help="Start a Dask LocalCluster of N worker processes here; 0 runs every shard in this process.")  # fmt: skip
@click.option("--data", metavar="SPEC", help="Probe images for motifs and pictures (default toyworld:256:12345) and "
              "labels (default: the model's own toy-world task, 2000 images).")  # fmt: skip
@click.option("--depth", default=1, show_default=True, type=int, help="circuits: layers walked back.")
@click.option("--top-k", default=8, show_default=True, type=int, help="circuits: strongest inputs kept per neuron.")
@click.option("--motif-kind", default="all", show_default=True, metavar="KIND",
              help="motifs: union|equivariance|inhibition|polysemantic|network|all.")  # fmt: skip
@click.option("--steps", default=64, show_default=True, type=int, help="pictures: optimisation steps.")
@click.option("--seed", default=0, show_default=True, type=int, help="pictures: seed of the starts.")
@click.option("--dry-run", is_flag=True, help="Print the plan and its estimated cost from measured shard times; "
              "run and write nothing.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (docs/scan.md).")
def scan(models, layers, what, catalog_path, scheduler, workers, data, depth, top_k, motif_kind, steps, seed, dry_run,
         as_json):  # fmt: skip
    """Catalogue every neuron of each MODEL: one shard per (model, layer), run here or on a Dask cluster.

    Each shard extracts its layer's circuits, motifs, labels or pictures and returns them as JSON; this
    process alone writes them, one transaction per shard. A shard the catalog already holds (same weights,
    arguments and circuits version) is skipped, so an interrupted scan finishes when run again. Workers get
    model specs and weights files with their sha256, never pickled modules, and refuse weights that differ.
    MODEL is a spec (zoo:NAME, planted:NAME, module:attr, file.py:attr), or SPEC@WEIGHTS.pt.

    \b
    Examples:
      circuits scan zoo:plain-cnn-s0 zoo:curve-cnn-s0 --catalog lab.db
      circuits scan zoo:plain-cnn-s0 --what circuits,motifs,labels --workers 2 --catalog lab.db
      circuits scan zoo:plain-cnn-s0 --layers conv3 --what pictures --dry-run --catalog lab.db
      circuits scan mypkg.nets:Net@run3.pt --scheduler tcp://10.0.0.5:8786 --catalog lab.db
    (on the cluster: `dask scheduler` once, then `dask worker tcp://10.0.0.5:8786` per machine)
    """
    from circuits.formatting import scan_lines
    from circuits.progress import progress_bar
    from circuits.scanning.run import scan as run_scan

    kwargs = {"layers": _split(layers) or None, "what": what, "workers": workers, "scheduler": scheduler,
              "data": data, "depth": depth, "top_k": top_k, "motif_kind": motif_kind, "steps": steps, "seed": seed}  # fmt: skip
    with progress_bar("scanning", unit="shard") as bar:

        def planned(total):
            bar.total = total
            bar.refresh()

        report = run_scan(list(models), catalog=catalog_path, dry_run=dry_run, progress=bar.update, planned=planned,
                          **kwargs)  # fmt: skip
    arguments = {"models": list(models), "catalog": catalog_path, "dry_run": dry_run, **kwargs}
    if as_json:
        echo_json(report, arguments, {m["model"]: m["id"] for m in report["models"]})
        return
    click.echo("\n".join(scan_lines(report, dry_run)))
