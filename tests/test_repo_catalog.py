"""The repository's catalog.db: current schema, every zoo model, its unions, their emitted modules.

Rebuild it with `circuits zoo catalog -o catalog.db` (README, "The catalog").
"""

import json
import sqlite3
from pathlib import Path

import pytest

from circuits import zoo
from circuits.catalog.schema import current_version

CATALOG = Path(__file__).parent.parent / "catalog.db"
SEEDED = [n for n in zoo.names() if n not in zoo.RECIPES]


@pytest.fixture(scope="module")
def db():
    assert CATALOG.is_file(), "catalog.db is missing: rebuild it with `circuits zoo catalog -o catalog.db`"
    # immutable: read-only, and no catalog.db-shm or -wal left beside the tracked file (nothing writes it here)
    connection = sqlite3.connect(f"file:{CATALOG}?immutable=1", uri=True)
    yield connection
    connection.close()


def test_catalog_has_the_current_schema_version(db):
    (version,) = db.execute("SELECT max(version) FROM schema_version").fetchone()
    assert version == current_version()
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_every_zoo_model_is_recorded_by_its_weights_hash(db):
    ids = {row[0] for row in db.execute("SELECT id FROM models")}
    assert {zoo.card(name)["weights_sha256"] for name in SEEDED} <= ids


def test_every_union_motif_has_an_emitted_module_with_measured_faithfulness(db):
    rows = db.execute(
        "SELECT i.target, i.members, m.faithfulness, m.code FROM motif_instances i "
        "JOIN modules m ON m.circuit = i.circuit WHERE i.motif LIKE 'union%'"
    ).fetchall()
    assert rows, "no union motifs in catalog.db"
    for target, members, faithfulness, code in rows:
        numbers = json.loads(faithfulness)
        assert numbers["target"] == target and "r2" in numbers and numbers["images"] > 0
        assert all(member in code for member in json.loads(members))  # the cases are wired into the code
        compile(code, "catalog-module", "exec")


def test_catalog_holds_the_unions_the_detector_finds_now(db):
    """The shipped rows are what `circuits motifs --kind union` reports today for the plain CNN, seed 0."""
    from circuits.data import load_data
    from circuits.graph import build_graph
    from circuits.motifs.union import unions
    from circuits.zoo.catalog import DEFAULT_DATA

    graph = build_graph("zoo:plain-cnn-s0")
    found = {(m.target, tuple(m.members)) for m in unions(graph, data=load_data(DEFAULT_DATA, graph.input_shape))}
    stored = {
        (target, tuple(json.loads(members)))
        for target, members in db.execute(
            "SELECT target, members FROM motif_instances WHERE motif LIKE 'union%' AND model = ?", (graph.weights_hash,)
        )
    }
    assert found and stored == found


def test_every_sparse_conv3_neuron_is_reverse_compiled_and_most_are_faithful(db):
    """plain-cnn-sparse: each conv3 neuron's top-8 module is stored, with the R² measured when it was built."""
    from circuits.zoo.catalog import COMPILED_LAYERS

    for seed in zoo.SEEDS:
        name = f"plain-cnn-sparse-s{seed}"
        layer = COMPILED_LAYERS["plain-cnn-sparse"]
        rows = db.execute(
            "SELECT c.target, m.faithfulness, m.code FROM circuits c JOIN modules m ON m.circuit = c.id "
            "WHERE c.model = ?", (zoo.card(name)["weights_sha256"],)
        ).fetchall()
        targets = {target for target, _, _ in rows}
        assert targets == {f"{layer}:{c}" for c in range(32)}, name
        r2 = [json.loads(f)["r2"] for _, f, _ in rows]
        live = [r for r in r2 if r is not None]
        assert sum(r >= 0.9 for r in live) >= 0.8 * len(live), name
        for _, _, code in rows:
            compile(code, "catalog-module", "exec")


def test_every_stored_module_is_rebuilt_from_its_stored_circuit_alone(db, tmp_path):
    """The shared catalog is self-contained: no model is loaded, yet each circuit emits its module again."""
    import shutil

    from circuits.catalog import Catalog
    from circuits.pipeline import emit_stored

    copy = tmp_path / "catalog.db"
    shutil.copy(CATALOG, copy)  # Catalog opens for writing; the shared file stays untouched
    modules = db.execute("SELECT id, code FROM modules ORDER BY id").fetchall()
    assert len(modules) >= 100
    with Catalog(copy) as cat:
        for module_id, code in modules:
            module, how = emit_stored(cat, module_id, inline_limit=10**9)
            assert (module.code, how) == (code, "measured"), module_id
