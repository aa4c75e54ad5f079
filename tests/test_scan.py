"""`circuits scan`: a scan on Dask workers records exactly the rows of a serial scan, survives a killed worker,
resumes an interrupted scan, refuses weights that differ, and says what it would cost.

Rows are read with plain sqlite3 (every column but the times), so the comparison does not lean on the code it
checks. One LocalCluster of two worker processes is shared by the module's tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import circuits
from circuits import zoo
from circuits.cli import main
from circuits.errors import ModelLoadError

MODELS = ["zoo:curve-cnn-s0", "zoo:resnet-cnn-s0"]  # the two smallest zoo families: 10 shards
SMALL = {"what": "circuits,motifs,labels", "motif_kind": "equivariance", "data": "toyworld:32:1"}
ARGV = ["--what", "circuits,motifs,labels", "--motif-kind", "equivariance", "--data", "toyworld:32:1"]

# Every content column of what a scan writes; created times and measured seconds are left out.
CONTENT = {
    "models": "id, name, architecture, spec, parameters",
    "layers": "model, name",
    "neurons": "model, layer, channel, label, label_source, label_evidence",
    "label_history": "model, layer, channel, label, source, evidence",
    "circuits": "id, model, target, method, parameters, nodes, graph, edge_attributes",
    "edges": "circuit, source, target, weight, kernel",
    "motifs": "id, kind, transform, description",
    "motif_instances": "id, motif, model, circuit, target, members, score, evidence",
    "images": "id, png",
    "neuron_images": "id, model, layer, channel, kind, rank, image, method, activation, agreement",
    "scan_shards": "id, model, layer, what, arguments, tool_version, layer_kind, channels, rows",
}


def rows(path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {table: sorted(conn.execute(f"SELECT {columns} FROM {table}").fetchall(), key=repr)
                for table, columns in CONTENT.items()}  # fmt: skip
    finally:
        conn.close()


def cli(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    path = tmp_path_factory.mktemp("serial") / "serial.db"
    result = cli("scan", *MODELS, *ARGV, "--workers", "0", "--catalog", str(path))
    assert result.exit_code == 0, result.output
    found = rows(path)
    assert len(found["scan_shards"]) == 30 and len(found["circuits"]) == 131  # 10 shards x 3 parts; every neuron
    assert found["motif_instances"] and found["edges"]
    return path, found


@pytest.fixture(scope="module")
def client():
    """The cluster a scan starts itself (``circuits.scanning.cluster.client``), kept for the module's tests."""
    from circuits.scanning.cluster import client as start

    with start(2) as made:
        # the workers import this checkout's circuits (PYTHONPATH is inherited), not another install's
        # (compared as real paths: spawned workers inherit sys.path, which other tests extend with 'benchmarks/..')
        found = made.run(lambda: __import__("os").path.realpath(__import__("circuits").__file__))
        assert set(found.values()) == {os.path.realpath(circuits.__file__)}
        yield made


def test_workers_run_with_glibcs_adaptive_malloc(client):
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_, which makes every large tensor a fresh mmap (a zoo shard took
    1.7x the CPU time); the workers a scan starts leave it unset."""
    assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {None}


def test_the_zoo_scanned_on_two_workers_gives_exactly_the_rows_of_a_serial_scan(serial, tmp_path):
    path = tmp_path / "workers.db"
    result = cli("scan", *MODELS, *ARGV, "--workers", "2", "--catalog", str(path))
    assert result.exit_code == 0, result.output
    assert rows(path) == serial[1]


def test_a_worker_killed_mid_scan_loses_nothing_and_duplicates_nothing(serial, client, tmp_path):
    pids = client.run(os.getpid)
    killed = []

    def kill_one():  # after the first shard lands, kill a worker that has shards in flight
        if not killed:
            busy = [address for address, keys in client.processing().items() if keys]
            assert busy, "no shard in flight to lose"
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(pids[busy[0]])

    path = tmp_path / "killed.db"
    report = circuits.scan(MODELS, catalog=path, scheduler=client, progress=kill_one, **SMALL)
    assert killed and report["counts"]["recorded"] == 10
    assert rows(path) == serial[1]  # primary keys would refuse a duplicate; the sorted lists would show a missing row
    client.wait_for_workers(2, timeout=120)  # the nanny restarted the killed worker
    assert killed[0] not in client.run(os.getpid).values()


class Interrupt(Exception):
    """Stands for Ctrl-C (a KeyboardInterrupt would stop pytest itself)."""


def stop_after(n):
    seen = []

    def progress():
        seen.append(1)
        if len(seen) == n:
            raise Interrupt

    return progress


@pytest.mark.parametrize("where", ["here", "cluster"])
def test_an_interrupted_scan_run_again_finishes_with_the_same_rows(serial, client, tmp_path, where):
    path = tmp_path / "interrupted.db"
    scheduler = client if where == "cluster" else None
    with pytest.raises(Interrupt):
        circuits.scan(MODELS, catalog=path, scheduler=scheduler, progress=stop_after(3), **SMALL)
    assert len(rows(path)["scan_shards"]) == 9  # the three shards recorded, whole, and nothing of the rest
    report = circuits.scan(MODELS, catalog=path, **SMALL)  # resumed in this process
    assert report["counts"]["done"] == 9 and report["counts"]["recorded"] == 7
    assert rows(path) == serial[1]


def test_a_rerun_of_a_finished_scan_runs_nothing(serial, tmp_path):
    path = tmp_path / "again.db"
    shutil.copy(serial[0], path)
    report = circuits.scan(MODELS, catalog=path, **SMALL)
    assert report["counts"] == {"shards": 10, "parts": 30, "done": 30, "to_run": 0, "shards_to_run": 0,
                                "recorded": 0, "rows": 0}  # fmt: skip
    assert rows(path) == serial[1]


def test_pictures_on_workers_are_the_pictures_of_a_serial_scan(client, tmp_path):
    options = {"what": "pictures", "layers": ["fc"], "steps": 4, "examples": 2, "data": "toyworld:16:1"}
    circuits.scan(MODELS[:1], catalog=tmp_path / "here.db", **options)
    circuits.scan(MODELS[:1], catalog=tmp_path / "there.db", scheduler=client, **options)
    here = rows(tmp_path / "here.db")
    assert len(here["neuron_images"]) == 4 * 3  # 4 neurons: a picture and 2 examples each
    assert rows(tmp_path / "there.db") == here


def test_models_travel_as_a_spec_a_weights_path_and_its_sha256(tmp_path):
    from circuits.scanning.plan import plan

    (shard,) = plan(MODELS[:1], ["fc"], "circuits", tool_version=circuits.__version__)
    task = json.loads(json.dumps(shard.task(circuits.__version__)))  # plain JSON: no module travels
    shipped = zoo.WEIGHTS_DIR / "curve-cnn-s0.pt"
    assert task["model"]["weights"] == str(shipped)
    assert task["model"]["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert task["model"]["id"] == zoo.card("curve-cnn-s0")["weights_sha256"]


def test_a_worker_refuses_weights_whose_sha256_differs_from_the_plans(client, tmp_path):
    import torch
    from nets import PlainCNN

    from circuits.scanning.plan import plan
    from circuits.scanning.shard import run_shard

    weights = tmp_path / "net.pt"
    state = PlainCNN().state_dict()
    torch.save(state, weights)
    spec = f"{Path(__file__).parent / 'nets.py'}:PlainCNN@{weights}"
    (shard,) = plan([spec], ["conv1"], "circuits", tool_version=circuits.__version__)
    task = shard.task(circuits.__version__)
    json.loads(run_shard(task))  # the planned file: accepted
    first = next(iter(state))
    torch.save({**state, first: state[first] + 1}, weights)  # the file changed after the plan
    with pytest.raises(ModelLoadError, match="refused the weights .* sha256"):
        run_shard(task)
    with pytest.raises(ModelLoadError, match="refused the weights"):  # on a worker, the same refusal
        client.submit(run_shard, task, pure=False).result()


def test_dry_run_prints_the_plan_and_an_estimate_from_measured_shard_times(serial, tmp_path):
    path = tmp_path / "dry.db"
    shutil.copy(serial[0], path)
    before = path.read_bytes()
    result = cli("scan", *MODELS, "zoo:plain-cnn-s0", *ARGV, "--dry-run", "--json", "--catalog", str(path))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["counts"] == {"shards": 14, "parts": 42, "done": 30, "to_run": 12, "shards_to_run": 4,
                                "recorded": 0, "rows": 0}  # fmt: skip
    # independently: seconds per neuron of each (part, layer kind), times the new model's neurons
    conn = sqlite3.connect(path)
    rate = {(w, k): s / c for w, k, s, c in conn.execute(
        "SELECT what, layer_kind, sum(seconds), sum(channels) FROM scan_shards GROUP BY what, layer_kind")}
    conn.close()
    plain = [(s["kind"], s["channels"]) for s in report["shards"] if s["model"] == "zoo:plain-cnn-s0"]
    expected = sum(rate[(w, kind)] * channels for kind, channels in plain for w in ("circuits", "motifs", "labels"))
    assert report["estimate"]["seconds"] == pytest.approx(expected, abs=1e-3)
    assert report["estimate"]["unmeasured"] == []
    assert path.read_bytes() == before  # a dry run writes nothing
    assert list(report)[0] == "schema_version" and report["provenance"]["weights_sha256"]["zoo:plain-cnn-s0"] == \
        zoo.card("plain-cnn-s0")["weights_sha256"]


def test_dry_run_on_a_new_catalog_says_there_are_no_measurements_and_makes_no_file(tmp_path):
    path = tmp_path / "new.db"
    result = cli("scan", MODELS[0], "--what", "pictures", "--dry-run", "--catalog", str(path))
    assert result.exit_code == 0, result.output
    assert "no measurements yet" in result.output and "4 shards, 4 parts" in result.output
    assert not path.exists()


@pytest.mark.parametrize("argv, words", [
    (["zoo:curve-cnn-s9"], "unknown zoo model 'curve-cnn-s9'"),
    (["zoo:curve-cnn-s0", "--layers", "conv4"], "layer 'conv4' is not a layer of zoo:curve-cnn-s0"),
    (["zoo:curve-cnn-s0", "--layers", "input"], "layer 'input' is not a layer"),
    (["zoo:curve-cnn-s0", "--what", "circuits,moitfs"], "unknown --what item 'moitfs'; did you mean 'motifs'"),
    (["zoo:curve-cnn-s0", "--workers", "-1"], "--workers takes a count"),
    (["zoo:curve-cnn-s0", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "not both"),
    (["zoo:curve-cnn-s0", "--scheduler", "localhost"], "--scheduler takes a Dask scheduler address"),
    (["zoo:curve-cnn-s0", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    (["zoo:curve-cnn-s0", "--motif-kind", "unoin"], "unknown motif kind 'unoin'"),
    (["zoo:curve-cnn-s0@missing.pt"], "weights file 'missing.pt' does not exist"),
    (["zoo:curve-cnn-s0", "--scheduler", "tcp://127.0.0.1:abc"], "--scheduler takes a Dask scheduler address"),
    (["zoo:curve-cnn-s0", "--scheduler", "tls://127.0.0.1:9"], "make a distributed.Client yourself"),
    (["zoo:curve-cnn-s0", "--what", "motifs", "--data", "bogus:x"], "data spec 'bogus:x' is neither"),
    (["zoo:curve-cnn-s0", "--what", "labels", "--data", "noise:16"], "labels are scored on toy-world images"),
])  # fmt: skip
def test_bad_input_is_one_line_naming_the_fix_and_writes_no_catalog(tmp_path, argv, words):
    path = tmp_path / "bad.db"
    result = cli("scan", *argv, "--catalog", str(path))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.output
    assert not path.exists()


def test_workers_without_dask_installed_say_how_to_install_it(tmp_path, monkeypatch):
    for name in ("distributed", "dask"):
        monkeypatch.setitem(sys.modules, name, None)  # `import distributed` now raises ImportError
    result = cli("scan", MODELS[0], "--layers", "fc", "--workers", "2", "--catalog", str(tmp_path / "a.db"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: running a scan on workers needs Dask distributed, which is not installed: pip install "
        "'circuits[scale]' (or pass --workers 0 to scan in this process)"]
    assert not (tmp_path / "a.db").exists()
    result = cli("scan", MODELS[0], "--layers", "fc", "--workers", "0", "--catalog", str(tmp_path / "b.db"))
    assert result.exit_code == 0, result.output  # in process, no Dask needed
    assert len(rows(tmp_path / "b.db")["circuits"]) == 4


def test_scan_help_teaches_with_examples():
    result = cli("scan", "--help")
    assert result.exit_code == 0 and "circuits scan zoo:plain-cnn-s0 --what circuits,motifs,labels --workers 2" in \
        result.output and "dask worker" in result.output


def test_the_library_twin_is_circuits_scan():
    from circuits.scanning.run import scan

    assert circuits.scan is scan


def test_planned_gives_the_progress_bar_its_total(tmp_path):
    path = tmp_path / "scan.db"
    totals, ticks = [], []
    circuits.scan(["zoo:curve-cnn-s0"], catalog=path, planned=totals.append, progress=lambda: ticks.append(1))
    layers = circuits.layers("zoo:curve-cnn-s0").layers.values()
    assert totals == [len(ticks)] and len(ticks) == sum(layer.kind not in ("input", "concat") for layer in layers)
    totals.clear()
    circuits.scan(["zoo:curve-cnn-s0"], catalog=path, planned=totals.append)  # all done: nothing to run, no total
    assert totals == []


def test_a_zoo_model_with_weights_of_its_own_is_catalogued_under_those_weights(tmp_path):
    """``zoo:NAME@tuned.pt`` (a fine-tuned zoo model) is read from tuned.pt on the worker, not from the
    worker's shipped copy of NAME."""
    import torch

    tuned = {k: v * 1.01 if v.is_floating_point() else v for k, v in circuits.load(MODELS[0]).module.state_dict().items()}
    torch.save(tuned, tmp_path / "tuned.pt")
    result = cli("scan", f"{MODELS[0]}@{tmp_path / 'tuned.pt'}", "--layers", "fc", "--catalog", str(tmp_path / "t.db"))
    assert result.exit_code == 0, result.output
    expected = circuits.load(MODELS[0], weights=str(tmp_path / "tuned.pt")).weights_hash
    assert expected != circuits.load(MODELS[0]).weights_hash
    assert [row[0] for row in rows(tmp_path / "t.db")["models"]] == [expected]


def test_checkpoints_of_one_spec_are_told_apart_and_a_repeat_is_scanned_once(tmp_path, monkeypatch):
    """Two checkpoints of one factory are two models in the report and its provenance; the same file named
    a second way (./w.pt) is not scanned twice."""
    import torch

    state = circuits.load(MODELS[0]).module.state_dict()
    torch.save(state, tmp_path / "run1.pt")
    torch.save({k: v * 1.5 if v.is_floating_point() else v for k, v in state.items()}, tmp_path / "run2.pt")
    monkeypatch.chdir(tmp_path)
    given = [f"{MODELS[0]}@run1.pt", f"{MODELS[0]}@run2.pt", f"{MODELS[0]}@./run2.pt"]
    result = cli("scan", *given, "--layers", "fc", "--catalog", "c.db", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [m["model"] for m in report["models"]] == given[:2]
    assert [s["model"] for s in report["shards"]] == given[:2]
    assert set(report["provenance"]["weights_sha256"]) == set(given[:2])
    assert len({m["id"] for m in report["models"]}) == 2
    assert report["counts"]["recorded"] == 2 and len(rows(tmp_path / "c.db")["models"]) == 2


def test_a_data_file_that_changed_is_scanned_again(tmp_path, monkeypatch):
    """Parts that read a data file are keyed by its contents (and its absolute path), not by its name."""
    import numpy as np

    monkeypatch.chdir(tmp_path)
    np.save("probe.npy", np.random.default_rng(0).random((16, 1, 32, 32)).astype("float32"))
    argv = ["scan", MODELS[0], "--layers", "fc", "--what", "motifs", "--data", "probe.npy", "--catalog", "d.db"]
    assert cli(*argv).exit_code == 0
    again = json.loads(cli(*argv, "--dry-run", "--json").output)
    assert again["counts"]["to_run"] == 0  # unchanged: done
    np.save("probe.npy", np.zeros((16, 1, 32, 32), "float32"))
    changed = json.loads(cli(*argv, "--dry-run", "--json").output)
    assert changed["counts"]["to_run"] == 1


def test_a_scan_refused_before_its_first_shard_leaves_no_catalog(tmp_path, monkeypatch):
    """A failure inside the first shard (here, weights that change under the plan) removes the catalog the
    scan had just created; an existing catalog is left as it was."""
    from circuits.scanning import shard

    def refuse(model):
        raise ModelLoadError("refused the weights (test)")

    monkeypatch.setattr(shard, "load_checked", refuse)
    path = tmp_path / "new.db"
    result = cli("scan", MODELS[0], "--layers", "fc", "--catalog", str(path))
    assert result.exit_code == 1 and "refused the weights (test)" in result.output
    assert not any(p.name.startswith("new.db") for p in tmp_path.iterdir())
