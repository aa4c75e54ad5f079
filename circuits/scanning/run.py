"""The driver: plan, skip what the catalog holds, run the rest here or on a Dask cluster, record as results arrive.

With ``workers=0`` and no scheduler every shard runs in this process, one after another; otherwise each shard
is one ``client.submit`` of :func:`circuits.scanning.shard.run_shard`, and results are recorded by this process
alone (the one writer) as their futures complete. A worker that dies is replaced by the cluster and its shards
run again elsewhere (Dask reschedules the tasks of a lost worker); a Ctrl-C loses only the shards in flight,
since each recorded shard was committed with its ``scan_shards`` rows, and the same command finishes the rest.
"""

from __future__ import annotations

import contextlib
import os
import uuid

from circuits import arguments
from circuits.errors import CircuitsError, UsageError, close_matches_hint


def scan(models, layers=None, what="circuits", catalog=None, *, workers: int = 0, scheduler=None,
         dry_run: bool = False, progress=None, planned=None, depth: int = 1, top_k: int = 8, data: str | None = None,
         motif_kind: str = "all", bar: float = 0.9, steps: int = 64, examples: int = 4, seed: int = 0) -> dict:  # fmt: skip
    """Catalogue every neuron of ``layers`` (default: all) of ``models`` with the parts in ``what``.

    Parameters
    ----------
    models : list of str
        Specs (``zoo:NAME``, ``planted:NAME``, ``module:attr``, ``file.py:attr``), each optionally
        ``SPEC@WEIGHTS.pt``.
    what : str or list
        Any of ``circuits`` (each neuron's depth-``depth`` top-``top_k`` circuit by weights), ``motifs`` (the
        ``motif_kind`` detectors on ``data``), ``labels`` (toy-world concepts reaching ``bar`` on ``data``,
        default the model's task) and ``pictures`` (feature visualisation, ``steps`` steps, ``examples`` top
        examples from ``data``, ``seed``).
    catalog : path
        Where rows land; parts already there (same weights, arguments and tool version) are skipped.
    workers, scheduler
        ``workers=0`` runs here; ``workers=N`` starts a ``LocalCluster`` of N processes; ``scheduler`` is a
        Dask scheduler address (``tcp://HOST:8786``) or a ``distributed.Client``.
    dry_run : bool
        Plan and estimate only; nothing is run or written.
    progress : callable
        Called with no argument after each shard is recorded.
    planned : callable
        Called once with the number of shards left to run, before the first runs (a progress bar's total).

    Returns
    -------
    dict
        ``models``, ``shards`` (one row per shard: model, layer, kind, channels, parts to run, parts done),
        ``counts`` (shards, parts, done, to_run, recorded, rows) and ``estimate`` (from measured times).

    Examples
    --------
    >>> import circuits, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.db")
    >>> circuits.scan(["zoo:curve-cnn-s0"], layers=["fc"], catalog=path)["counts"]["recorded"]
    1
    >>> circuits.scan(["zoo:curve-cnn-s0"], layers=["fc"], catalog=path)["counts"]["done"]   # resumed: skipped
    1
    """
    from circuits import __version__
    from circuits.scanning.plan import plan

    workers, path = _check(workers, scheduler, catalog, dry_run)
    options = _options(depth, top_k, data, motif_kind, bar, steps, examples, seed)
    shards = plan(models, layers, what, options, __version__)
    done, measured = _state(path, dry_run)
    for shard in shards:
        shard.done = [p for p in shard.parts if p.key in done]
        shard.parts = [p for p in shard.parts if p.key not in done]
    pending = [s for s in shards if s.parts]
    report = _report(shards, pending, measured, workers)
    if dry_run or not pending:
        return report
    if planned:
        planned(len(pending))
    counts = [0, 0]  # shards recorded, rows
    created = not os.path.exists(path)
    try:
        if workers == 0 and scheduler is None:
            _run_here(path, pending, progress, __version__, counts)
        else:
            _run_cluster(path, pending, progress, __version__, workers, scheduler, counts)
    except BaseException:
        if created and not counts[0]:  # a scan that failed before its first shard leaves no empty catalog
            _remove_catalog(path)
        raise
    report["counts"].update(recorded=counts[0], rows=counts[1])
    return report


def _remove_catalog(path: str) -> None:
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(OSError):
            os.remove(name)


def _check(workers, scheduler, catalog, dry_run):
    from circuits.catalog import check_writable

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UsageError(f"--workers takes a count of worker processes, 0 (this process) or more, got {workers!r}")
    if scheduler is not None and workers:
        raise UsageError("give --scheduler ADDRESS (a running cluster) or --workers N (one started here), not both")
    if scheduler is not None and isinstance(scheduler, str):
        from circuits.scanning.cluster import check_address

        check_address(scheduler)
    if catalog is None:
        raise UsageError("a scan records into a catalog: pass --catalog PATH (or set CIRCUITS_CATALOG)")
    path = os.fspath(arguments.path(catalog, "the catalog path"))
    if not dry_run:
        check_writable(path)
    return workers, path


def _options(depth, top_k, data, motif_kind, bar, steps, examples, seed):
    from circuits.motifs import CHOICES
    from circuits.scanning.plan import Options

    if arguments.text(motif_kind, "motif_kind") not in CHOICES:
        raise UsageError(f"unknown motif kind '{motif_kind}'{close_matches_hint(motif_kind, CHOICES)} (kinds: "
                         f"{', '.join(CHOICES)})")  # fmt: skip
    bar = arguments.number(bar, "bar")
    if not 0.5 <= bar <= 1.0:
        raise UsageError(f"bar must be an AUROC between 0.5 and 1, got {bar}")
    return Options(depth=arguments.integer(depth, "depth", minimum=1), top_k=arguments.integer(top_k, "top_k", minimum=1),
                   data=None if data is None else arguments.text(data, "data"), motif_kind=motif_kind, bar=bar,
                   steps=arguments.integer(steps, "steps", minimum=1),
                   examples=arguments.integer(examples, "examples", minimum=1),
                   seed=arguments.integer(seed, "seed", minimum=0))  # fmt: skip


def _state(path: str, dry_run: bool) -> tuple[set[str], list[dict]]:
    """The parts the catalog holds and their measured times; nothing for a catalog not made yet."""
    from circuits.catalog import Catalog
    from circuits.scanning.record import done_keys

    if not os.path.isfile(path) or not os.path.getsize(path):
        return set(), []
    with Catalog(path, readonly=dry_run, create=False) as catalog:
        return done_keys(catalog), catalog.scan_shards()


def _report(shards, pending, measured, workers) -> dict:
    from circuits.scanning.estimate import estimate

    models = {s.model.text: s.model for s in shards}
    rows = [{"model": s.model.text, "layer": s.layer, "kind": s.kind, "channels": s.channels,
             "run": [p.what for p in s.parts], "done": [p.what for p in s.done]} for s in shards]  # fmt: skip
    parts = sum(len(s.parts) + len(s.done) for s in shards)
    to_run = sum(len(s.parts) for s in shards)
    return {"models": [{"model": m.text, "id": m.id, "weights": m.weights, "sha256": m.sha256} for m in models.values()],
            "shards": rows,
            "counts": {"shards": len(shards), "parts": parts, "done": parts - to_run, "to_run": to_run,
                       "shards_to_run": len(pending), "recorded": 0, "rows": 0},
            "estimate": estimate(pending, measured, workers)}  # fmt: skip


def _run_here(path, pending, progress, version, counts: list) -> None:
    """Every shard in this process; ``counts`` (shards recorded, rows) grows as each is recorded."""
    from circuits.catalog import Catalog
    from circuits.scanning.record import record
    from circuits.scanning.shard import run_shard

    with Catalog(path) as catalog:
        for shard in pending:
            counts[1] += record(catalog, shard, run_shard(shard.task(version)))
            counts[0] += 1
            if progress:
                progress()


def _run_cluster(path, pending, progress, version, workers, scheduler, counts: list) -> None:
    """Every shard on the cluster, recorded here as it lands; ``counts`` as in :func:`_run_here`."""
    from circuits.catalog import Catalog
    from circuits.scanning.cluster import client
    from circuits.scanning.record import record
    from circuits.scanning.shard import run_shard

    def land(index, text):
        counts[1] += record(catalog, pending[index], text)
        counts[0] += 1
        if progress:
            progress()

    with client(workers, scheduler) as cluster, Catalog(path) as catalog:
        complete(cluster, run_shard, [s.task(version) for s in pending], [s.key for s in pending], land,
                 [f"{s.model.text} {s.layer}" for s in pending])  # fmt: skip


def complete(cluster, function, tasks: list, keys: list[str], land, names: list[str] | None = None) -> None:
    """Submit ``function(task)`` for every task to ``cluster`` and call ``land(index, result)`` here, in this one
    process, as each future completes (any order); the futures still out are cancelled on the way out (an
    error, a Ctrl-C). A task whose workers all died (Dask's ``KilledWorker``) is one sentence naming it."""
    from circuits.scanning.cluster import distributed

    dd = distributed()
    run = uuid.uuid4().hex[:8]  # a key of our own per run: an interrupted run's futures never answer for this one
    futures = [cluster.submit(function, task, key=f"circuits-scan-{key[:16]}-{run}", pure=False)
               for task, key in zip(tasks, keys)]  # fmt: skip
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for future in dd.as_completed(futures):
            try:
                result = future.result()
            except dd.KilledWorker:
                name = (names or keys)[index[future.key]]
                raise CircuitsError(f"the shard {name} killed every worker that ran it (out of memory?); give "
                                    "workers more memory, then run the same command again to finish the rest") from None  # fmt: skip
            land(index[future.key], result)
            future.release()
    finally:
        cluster.cancel([f for f in futures if not f.done()])
