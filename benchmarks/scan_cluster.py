"""Scan benchmark: the zoo serial against a LocalCluster of 2 workers, the scheduler's cost per shard, the two
ways of recording, and a paper estimate for 100 MobileNet-size models on 64 workers. One run, one machine.

Run:  python benchmarks/scan_cluster.py            (about 5 minutes on 2 shared cores; writes RESULTS_scan.md)
      python benchmarks/scan_cluster.py --quick    (three zoo models, a quick look; writes nothing)

1. Every seeded zoo model (21), every layer, circuits + motifs (equivariance) + labels on toyworld:128:12345:
   ``circuits.scan`` with ``workers=0`` against the same scan on a ``LocalCluster(2)`` already started (its
   start-up is reported apart), and the two catalogs' rows compared.
2. Scheduler overhead: 400 no-op shards through ``circuits.scanning.run.complete`` (the loop a scan uses)
   against the same no-op called in process; the difference per shard.
3. Recording: shard results returned as JSON and written by the one writer (what a scan does), against each
   worker writing its shard into a catalog of its own that the driver then merges (``Catalog.merge``, what
   ``circuits catalog merge`` does), on the same cluster and shards.
4. The estimate: the circuits part of MobileNetV2 (224x224, width 1.0, ``benchmarks/mobilenetv2.py``) timed on
   sampled layers, per neuron, extrapolated to every layer, times 100 models, over 64 workers, plus the
   measured scheduler and writer costs. An estimate on paper, labelled as one.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join([os.path.join(HERE, ".."), HERE, os.environ.get("PYTHONPATH", "")])

from mobilenetv2 import MobileNetV2  # noqa: E402

import circuits  # noqa: E402
from circuits import zoo  # noqa: E402

OPTIONS = {"what": "circuits,motifs,labels", "motif_kind": "equivariance", "data": "toyworld:128:12345"}
CONTENT = ("SELECT id FROM circuits", "SELECT circuit, source, target, weight FROM edges",
           "SELECT id FROM motif_instances", "SELECT model, layer, channel, label, label_evidence FROM neurons",
           "SELECT id, rows FROM scan_shards")  # fmt: skip


class MobileNetV2At224(MobileNetV2):
    """MobileNetV2 as the paper has it, declaring its ImageNet input size (a scan takes no --input-shape)."""

    input_shape = (3, 224, 224)


def rows(path) -> list:
    conn = sqlite3.connect(path)
    try:
        return [sorted(conn.execute(sql).fetchall(), key=repr) for sql in CONTENT]
    finally:
        conn.close()


def noop(task):
    return task


def merge_way(task_and_folder):
    """The other way of recording: run the shard, write it into a catalog of its own, return that file."""
    from circuits.catalog import Catalog
    from circuits.scanning.record import record
    from circuits.scanning.shard import run_shard

    shard, folder = task_and_folder
    path = os.path.join(folder, f"shard-{shard.key[:16]}.db")
    with Catalog(path) as catalog:
        record(catalog, shard, run_shard(shard.task(circuits.__version__)))
    return path


def timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def zoo_ratio(models, tmp, client) -> dict:
    serial_s, _ = timed(lambda: circuits.scan(models, catalog=os.path.join(tmp, "serial.db"), **OPTIONS))
    cluster_s, report = timed(lambda: circuits.scan(models, catalog=os.path.join(tmp, "cluster.db"), scheduler=client,
                                                    **OPTIONS))  # fmt: skip
    same = rows(os.path.join(tmp, "serial.db")) == rows(os.path.join(tmp, "cluster.db"))
    conn = sqlite3.connect(os.path.join(tmp, "serial.db"))
    shard_s, circuits_n = conn.execute("SELECT sum(seconds), sum(CASE WHEN what = 'circuits' THEN rows END) "
                                       "FROM scan_shards").fetchone()  # fmt: skip
    conn.close()
    return {"serial": serial_s, "cluster": cluster_s, "same": same, "shards": report["counts"]["shards"],
            "rows": report["counts"]["rows"], "shard_seconds": shard_s, "circuits": circuits_n}  # fmt: skip


def overhead(client, n: int = 400) -> dict:
    from circuits.scanning.run import complete

    tasks = [{"i": i} for i in range(n)]
    keys = [f"{i:016d}" for i in range(n)]
    local_s, _ = timed(lambda: [noop(t) for t in tasks])
    passes = []
    for _ in range(3):
        seconds, _ = timed(lambda: complete(client, noop, tasks, keys, lambda i, r: None))
        passes.append(seconds)
    return {"n": n, "per_shard_ms": (statistics.median(passes) - local_s) / n * 1000, "passes": passes}


def recording(models, tmp, client) -> dict:
    from circuits.catalog import Catalog
    from circuits.scanning.plan import Options, plan
    from circuits.scanning.run import complete

    shards = plan(models, None, OPTIONS["what"], Options(motif_kind=OPTIONS["motif_kind"], data=OPTIONS["data"]),
                  circuits.__version__)  # fmt: skip
    folder = os.path.join(tmp, "shards")
    os.makedirs(folder)
    merged = os.path.join(tmp, "merged.db")

    def run():
        with Catalog(merged) as catalog:
            complete(client, merge_way, [(s, folder) for s in shards], [s.key for s in shards],
                     lambda i, path: catalog.merge(path))  # fmt: skip

    merge_s, _ = timed(run)
    json_s, _ = timed(lambda: circuits.scan(models, catalog=os.path.join(tmp, "json.db"), scheduler=client, **OPTIONS))
    return {"json": json_s, "merge": merge_s, "same": rows(merged) == rows(os.path.join(tmp, "json.db"))}


def writer_rate(tmp) -> float:
    """Seconds the one writer spends per circuit: ``record`` of the serial scan's circuits again, into a new file."""
    from circuits.catalog import Catalog

    conn = sqlite3.connect(os.path.join(tmp, "serial.db"))
    stored = [r[0] for r in conn.execute("SELECT id FROM circuits")]
    conn.close()
    with Catalog(os.path.join(tmp, "serial.db"), readonly=True) as source:
        payloads = [(source.value("SELECT model FROM circuits WHERE id = ?", (i,)), source.circuit(i)) for i in stored]
    with Catalog(os.path.join(tmp, "writer.db")) as catalog:
        seconds, _ = timed(lambda: [catalog.add_circuit(model, p) for model, p in payloads])
    return seconds / len(payloads)


def mobilenet(samples: int, neurons: int = 8) -> dict:
    """Circuits part of MobileNetV2 at 224x224: seconds per neuron over the first ``neurons`` channels of
    ``samples`` layers spread over its depth (the first neuron of a layer pays for the batched kernels of all,
    so a few neurons overstate a wide layer's rate: the estimate leans high)."""
    import torch

    from circuits.extraction import extract
    from circuits.scanning.plan import plan
    from circuits.scanning.shard import load_checked

    torch.set_num_threads(1)
    shards = plan([f"{os.path.abspath(__file__)}:MobileNetV2At224"], None, "circuits", tool_version=circuits.__version__)
    loaded, graph = load_checked(shards[0].model.to_dict())
    inner = [i for i, s in enumerate(shards) if s.kind != "output"]  # the logits layer is sampled on its own
    picks = sorted({inner[round(i * (len(inner) - 1) / (samples - 1))] for i in range(samples)}
                   | {i for i, s in enumerate(shards) if s.kind == "output"})
    rate = {}
    for i in picks:
        layer, n = shards[i].layer, min(neurons, shards[i].channels)
        start = time.perf_counter()
        for channel in range(n):  # what the circuits part does per neuron (circuits/scanning/shard.py)
            extract(graph, f"{layer}:{channel}", depth=1, top_k=8, method="weights").to_json()
        rate[i] = (time.perf_counter() - start) / n
    total = 0.0
    for i, shard in enumerate(shards):  # each layer at the rate of the nearest sampled one
        alike = [p for p in picks if (shards[p].kind == "output") == (shard.kind == "output")]
        total += shard.channels * rate[min(alike, key=lambda p: abs(p - i))]
    return {"layers": len(shards), "neurons": sum(s.channels for s in shards), "sampled": len(picks),
            "per_layer": neurons, "rates_ms": [rate[i] * 1000 for i in picks], "model_seconds": total}  # fmt: skip


def stage(name, function):
    seconds, value = timed(function)
    print(f"{name}: {seconds:.1f} s", file=sys.stderr)
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three zoo models, fewer samples; write nothing")
    args = parser.parse_args()
    from circuits.scanning.cluster import client as start_cluster

    models = [f"zoo:{n}" for n in zoo.names() if n not in zoo.RECIPES]
    models = models[:3] if args.quick else models
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with start_cluster(2) as client:  # the LocalCluster(2) a scan with --workers 2 starts, its settings too
            startup_s = time.perf_counter() - started
            client.run(lambda: __import__("circuits.scanning.shard"))  # workers warm: imports done before timing
            zoo_run = stage("zoo", lambda: zoo_ratio(models, tmp, client))
            over = stage("overhead", lambda: overhead(client, 100 if args.quick else 400))
            record_run = stage("recording", lambda: recording(models, tmp, client))
            per_circuit = stage("writer", lambda: writer_rate(tmp))
        mobile = stage("mobilenet", lambda: mobilenet(3 if args.quick else 6))
    lines = report(models, startup_s, zoo_run, over, record_run, per_circuit, mobile)
    print("\n".join(lines))
    if not args.quick:
        with open(os.path.join(HERE, "RESULTS_scan.md"), "w") as handle:
            handle.write("\n".join(lines) + "\n")


def report(models, startup_s, zoo_run, over, record_run, per_circuit, mobile) -> list[str]:
    models_n, workers_n = 100, 64
    shards = models_n * mobile["layers"]
    compute = models_n * mobile["model_seconds"] / workers_n
    scheduler = shards * over["per_shard_ms"] / 1000
    writer = models_n * mobile["neurons"] * per_circuit
    estimate = max(compute, scheduler, writer)
    faster = "JSON to one writer" if record_run["json"] <= record_run["merge"] else "per-shard catalogs merged"
    from importlib.metadata import version

    from distributed import __version__ as dv

    return [
        "# Scan benchmark results",
        "",
        "`python benchmarks/scan_cluster.py` (one run; ratios are measured in the same run, on the same machine).",
        "",
        f"**Machine:** {platform.machine()}, {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} when the "
        f"report was written), Python "
        f"{platform.python_version()}, Dask distributed {dv}, sqlite-utils {version('sqlite-utils')}, "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| measurement | result |",
        "|---|---|",
        f"| zoo ({len(models)} models, {zoo_run['shards']} shards, {zoo_run['rows']} rows): serial / LocalCluster(2) "
        f"wall | **{zoo_run['serial'] / zoo_run['cluster']:.2f}x** ({zoo_run['serial']:.1f} s vs "
        f"{zoo_run['cluster']:.1f} s; rows identical: {zoo_run['same']}) |",
        f"| the same with the cluster's start-up counted | {zoo_run['serial'] / (zoo_run['cluster'] + startup_s):.2f}x "
        f"(start-up {startup_s:.1f} s) |",
        f"| scheduler overhead per shard ({over['n']} no-op shards through `complete`, median of 3) | "
        f"**{over['per_shard_ms']:.2f} ms** (passes {', '.join(f'{p:.2f}' for p in over['passes'])} s) |",
        f"| shard time inside workers, summed | {zoo_run['shard_seconds']:.1f} s ({zoo_run['shard_seconds'] / zoo_run['shards'] * 1000:.0f} ms per shard) |",
        f"| recording: JSON to one writer / per-shard catalogs merged | **{record_run['json']:.1f} s vs "
        f"{record_run['merge']:.1f} s** ({record_run['merge'] / record_run['json']:.2f}x; rows identical: "
        f"{record_run['same']}); faster: {faster} |",
        f"| one writer, per circuit (`add_circuit`) | {per_circuit * 1000:.2f} ms |",
        "",
        "## Estimate (on paper, not measured): 100 MobileNet-size models x all layers, 64 workers",
        "",
        f"MobileNetV2 at 224x224 (`benchmarks/mobilenetv2.py`, width 1.0) has {mobile['layers']} layers with neurons "
        f"and {mobile['neurons']:,} neurons. The circuits part (depth 1, top-8, by weights) was timed on "
        f"{mobile['sampled']} layers (the logits layer and layers spread over its depth; the first {mobile['per_layer']} neurons of each; "
        f"{', '.join(f'{r:.1f}' for r in mobile['rates_ms'])} ms per neuron), each other layer taken at its nearest "
        f"sampled layer's rate (the logits layer at its own): **{mobile['model_seconds'] / 60:.1f} min of shard time per model** on one core.",
        "",
        f"- compute: 100 x {mobile['model_seconds']:.0f} s / 64 workers = {compute / 60:.1f} min",
        f"- scheduler: {shards:,} shards x {over['per_shard_ms']:.2f} ms = {scheduler:.1f} s (overlaps the compute)",
        f"- the one writer: {models_n * mobile['neurons']:,} circuits x {per_circuit * 1000:.2f} ms = "
        f"{writer / 60:.1f} min (overlaps the compute)",
        f"- **estimate: about {estimate / 60:.0f} min** (the largest of the three; they run at the same time), "
        f"against {models_n * mobile['model_seconds'] / 3600:.1f} h on one core. Labels, motifs and pictures add to "
        "the compute; their per-neuron costs on the zoo are in each catalog's `scan_shards`.",
        "",
        "Assumptions: the 64 workers are as fast as one core here, the weights file is on every worker, the shards of "
        "a model are independent (they are), and no layer is far slower than its nearest sampled one.",
    ]


if __name__ == "__main__":
    main()
