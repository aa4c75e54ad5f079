"""A catalog on a read-only mount, or a file nobody may write: every read works and changes nothing, and every
write is refused in one line (exit 2) before any work.

The tests run as root in CI, and root writes a chmod'ed file anyway, so "read-only" is made two ways that
stop root too: ``immutable`` (``chattr +i`` on the file and its folder; plain chmod when not root) and
``ro-mount`` (a small tmpfs remounted read-only, as a lab's shared mount would be). Each skips, with its reason,
where the machine does not allow it, and checks that it really stops a write before any test relies on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from serving import fetch_json, free_port, start_serve, stop_group

from circuits.catalog import Catalog, schema
from circuits.cli import main
from circuits.errors import CatalogError, CatalogReadOnlyError

ROOT = Path(__file__).resolve().parents[1]
SHA = hashlib.sha256(b"model A").hexdigest()


def _tool(name: str) -> str | None:
    """A system tool (chattr, mount), also where a bare PATH would not find it."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"]))


def _run(name, *args):
    tool = _tool(name)
    return tool is not None and subprocess.run([tool, *args], capture_output=True, text=True).returncode == 0


@contextlib.contextmanager
def immutable(folder: Path):
    """The folder and every file in it made unwritable: chattr +i as root (chmod does not stop root)."""
    paths = [*folder.iterdir(), folder]
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if not _run("chattr", "+i", *map(str, paths)):
        _run("chattr", "-i", *map(str, paths))
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE and ext2/3/4, xfs or btrfs)")
    try:
        yield
    finally:
        _run("chattr", "-i", *map(str, paths))


@contextlib.contextmanager
def read_only_mount(folder: Path, mount: Path):
    """A copy of the folder's files on a tmpfs remounted read-only; yields the mount."""
    mount.mkdir()
    if os.geteuid() != 0 or not _run("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        for f in folder.iterdir():
            shutil.copy2(f, mount / f.name)
        assert _run("mount", "-o", "remount,ro", str(mount)), "could not remount the tmpfs read-only"
        yield mount
    finally:
        for _ in range(50):  # a reader that was just killed may hold the mount for a moment
            if _run("umount", str(mount)):
                break
            time.sleep(0.1)
        else:
            _run("umount", "-l", str(mount))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A catalog (in WAL mode, as every catalog is) holding a planted circuit stored whole, its motifs, a label."""
    from circuits.extraction import extract
    from circuits.pipeline import record

    path = tmp_path_factory.mktemp("source") / "cat.db"
    with Catalog(path) as cat:
        ids = record(cat, "planted:union", extract("planted:union", "union:0", depth=1, top_k=2))
        model = cat.list("models")[0]["name"]
        cat.add_motifs(cat.list("models")[0]["id"], {"model": model, "motifs": [
            {"kind": "union", "transform": "reflect", "target": "union:0", "members": ["in:0"], "score": 0.8,
             "evidence": {}}]})  # fmt: skip
        layer = cat.list("circuits")[0]["target"].split(":")[0]
        cat.label(model, f"{layer}:0", "mirror union")
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    for suffix in ("-wal", "-shm"):  # a closed catalog: main file only, as it is shared or downloaded
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {"path": path, "circuit": ids["circuit"], "model": model}


@pytest.fixture(params=["immutable", "ro-mount"])
def read_only(request, source, tmp_path):
    """The source catalog, alone in a folder that nobody (root included) can write; yields its path."""
    folder = tmp_path / "shared"
    folder.mkdir()
    shutil.copy2(source["path"], folder / "cat.db")
    if request.param == "immutable":
        context = immutable(folder)
    else:
        context = read_only_mount(folder, tmp_path / "mnt")
    with context as mounted:
        path = (mounted or folder) / "cat.db"
        with pytest.raises(OSError):
            open(path, "ab").close()  # the mechanism really stops this process
        with pytest.raises(OSError):
            open(path.parent / "probe", "w").close()
        yield path


def snapshot(path: Path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def cli(*args):
    return CliRunner().invoke(main, list(args))


def one_line_error(result, code, *words):
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_every_read_command_works_on_a_read_only_catalog_and_changes_nothing(read_only, source, tmp_path):
    before, db = snapshot(read_only), str(read_only)
    assert json.loads(cli("catalog", "stats", "--json", "--catalog", db).output)["counts"]["circuits"] == 1
    for kind in ("models", "circuits", "neurons", "motifs", "instances", "modules", "families"):
        assert cli("catalog", "list", "--kind", kind, "--catalog", db).exit_code == 0, kind
    for ref in (source["circuit"][:8], source["model"], "union/reflect"):
        result = cli("catalog", "show", ref, "--json", "--catalog", db)
        assert result.exit_code == 0, (ref, result.output)
    assert json.loads(cli("catalog", "show", source["circuit"][:8], "--json", "--catalog", db).output)["item"]["id"] \
        == source["circuit"]
    hits = json.loads(cli("catalog", "search", "mirror", "--json", "--catalog", db).output)["results"]
    assert "mirror union" in [h["text"] for h in hits]
    for fmt in ("json", "sql"):
        assert cli("catalog", "export", "--format", fmt, "--catalog", db).exit_code == 0, fmt
    result = cli("catalog", "export", "--format", "csv", "-o", str(tmp_path / "dump"), "--catalog", db)
    assert result.exit_code == 0 and (tmp_path / "dump" / "circuits.csv").is_file()
    out = tmp_path / "out"
    out.mkdir()
    result = cli("catalog", "show", source["circuit"][:8], "--emit", str(out / "c.py"), "--render", str(out / "c.svg"),
                 "--catalog", db)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "c.py").read_text().startswith('"""') or (out / "c.py").stat().st_size > 0
    assert (out / "c.svg").stat().st_size > 0
    assert cli("catalog", "show", "no-such-id", "--catalog", db).exit_code == 2  # a failing read writes nothing either
    assert snapshot(read_only) == before  # bytes, mtime, and no -wal / -shm next to it


def test_the_library_reads_a_read_only_catalog_and_refuses_writes_naming_the_file(read_only):
    with Catalog(read_only, readonly=True) as cat:
        assert cat.stats()["counts"]["circuits"] == 1
        with pytest.raises(CatalogReadOnlyError, match=rf"^{read_only} is open read-only") as raised:
            cat.add_model(SHA, "zoo:other")
        assert raised.value.exit_code == 2 and len(str(raised.value).splitlines()) == 1
    with pytest.raises(CatalogReadOnlyError, match=rf"^{read_only} is read-only: "):
        Catalog(read_only)  # opened for writing: refused before SQLite is asked


def test_write_commands_on_a_read_only_catalog_fail_in_one_line_before_any_work(read_only, source, tmp_path,
                                                                               monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded although the catalog cannot be written")

    import circuits.cli.extract
    import circuits.cli.motifs
    import circuits.zoo.catalog

    monkeypatch.setattr(circuits.cli.extract, "load_model", no_work)
    monkeypatch.setattr(circuits.cli.motifs, "load_model", no_work)
    monkeypatch.setattr(circuits.zoo.catalog, "build_catalog", no_work)
    before, db = snapshot(read_only), str(read_only)
    other = tmp_path / "other.db"
    shutil.copy2(source["path"], other)
    for args in (["extract", "planted:union", "--neuron", "union:0", "--catalog", db],
                 ["motifs", "planted:union", "--catalog", db],
                 ["zoo", "catalog", "-o", db],
                 ["catalog", "label", source["model"], "union:0", "x", "--catalog", db],
                 ["catalog", "merge", str(other), "--catalog", db],
                 ["catalog", "upgrade", "--catalog", db],
                 ["extract", "planted:union", "--neuron", "union:0", "--catalog", str(read_only.parent / "new.db")]):
        one_line_error(cli(*args), 2, "is read-only", "copy it somewhere writable or pass another")
    assert snapshot(read_only) == before


def test_merge_reads_a_colleagues_catalog_from_a_read_only_mount(read_only, tmp_path):
    with Catalog(tmp_path / "mine.db") as mine:
        added = mine.merge(read_only)
    assert added["circuits"] == 1 and added["neurons"] >= 1


def test_read_commands_never_switch_a_writable_catalog_to_wal_even_when_they_fail(source, tmp_path):
    path = tmp_path / "rollback.db"
    shutil.copy2(source["path"], path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    conn.close()
    before = snapshot(path)
    for args in (["stats"], ["list"], ["search", "mirror"], ["show", source["model"]], ["show", "no-such-id"],
                 ["export", "--format", "sql"]):
        assert cli("catalog", *args, "--catalog", str(path)).exit_code in (0, 2), args
    assert snapshot(path) == before
    assert path.read_bytes()[18:20] == b"\x01\x01"  # the header's file format bytes: rollback journal, not WAL


def test_an_older_catalog_opened_read_only_is_refused_and_upgrade_migrates_it(source, tmp_path, monkeypatch):
    path, version = tmp_path / "old.db", schema.current_version()
    shutil.copy2(source["path"], path)
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, "ALTER TABLE models ADD COLUMN license TEXT;"])
    before = snapshot(path)
    with pytest.raises(CatalogError, match="open it once writable to upgrade it"):
        Catalog(path, readonly=True)
    one_line_error(cli("catalog", "stats", "--catalog", str(path)), 1, str(path), "circuits catalog upgrade")
    assert snapshot(path)[:2] == before[:2]  # (a WAL reader in a writable folder may leave -wal/-shm: SQLite's own)
    assert not [p for p in tmp_path.iterdir() if ".bak" in p.name]
    result = cli("catalog", "upgrade", "--catalog", str(path))
    assert result.exit_code == 0 and f"from schema version {version} to {version + 1}" in result.output
    assert (tmp_path / f"old.db.bak-v{version}").is_file()
    assert json.loads(cli("catalog", "stats", "--json", "--catalog", str(path)).output)["catalog_schema_version"] \
        == version + 1


def test_serve_opens_a_read_only_catalog_immutable_on_loopback(read_only):
    pytest.importorskip("datasette")
    from circuits.catalog.serve import command

    assert command("a.db", "m.json", 8001)[4:7] == ["a.db", "--host", "127.0.0.1"]
    port = free_port()
    before = snapshot(read_only)
    proc = start_serve(read_only, port)
    try:
        rows = fetch_json(f"http://127.0.0.1:{port}/cat/circuits.json?_shape=array", proc)
        assert rows is not None, "datasette did not answer"
        assert len(rows) == 1
    finally:
        stop_group(proc)
    assert snapshot(read_only) == before
