"""Hostile and malformed checkpoints for ``--weights`` and ``.pt2`` models: refused in one line, nothing runs.

Every file in ``FILES`` (and every seeded byte-level mutation of a good checkpoint) is given to
``circuits layers`` in-process. Each ends with an allowed exit code (2 where the file is at fault and the
user can fix it, 1 for a failure to read it), exactly one ``Error: `` line naming the problem, no traceback
and no internal error, no ``*.tmp`` left behind, and never the payload's marker file. Files that declare
terabytes in a few bytes are also loaded in a subprocess whose peak RSS must stay under 1 GB.

Add a case with one ``Checkpoint(id, make, exits, words)`` row: ``make(tmp, good)`` writes the file (``good`` is
planted:union's state_dict) and returns its path; ``words`` must appear in the error line.
"""

from __future__ import annotations

import io
import os
import pathlib
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fuzz_tally import tally
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuits.cli import main

SCALE = int(os.environ.get("CIRCUITS_FUZZ_EXAMPLES", "0"))
UNION = "planted:union"
OK, FAIL, USAGE, LOAD = frozenset({0}), frozenset({1, 2}), frozenset({2}), frozenset({1})
LIMIT_WORD = "CIRCUITS_MAX_WEIGHTS_BYTES"


class Touch:
    """Unpickling this calls Path.touch(marker): pure Python proof that pickled code ran."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@dataclass
class Checkpoint:
    id: str
    make: Callable[[Path, dict], Path]
    exits: frozenset = FAIL
    words: tuple = ()
    hostile: bool = False  # crafted to run code or to take the machine's memory
    spec: str = UNION  # the model the file is given to ('{path}' for a .pt2 model itself)


# --- crafting --------------------------------------------------------------------------------------------------


def saved(obj, legacy=False):
    def make(tmp, good):
        path = tmp / "w.pt"
        torch.save(obj(good) if callable(obj) else obj, path, _use_new_zipfile_serialization=not legacy)
        return path

    return make


def edited(good_state, key, change):
    state = dict(good_state)
    change(state, key)
    return state


def long1(n: int) -> bytes:
    """The pickle opcode LONG1 for n."""
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def rezip(src: Path, dst: Path, change) -> Path:
    """A copy of the torch zip ``src`` with each member passed through ``change(name, bytes)`` (None drops it)."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for info in archive.infolist():
            data = change(info.filename, archive.read(info.filename))
            if data is not None:
                out.writestr(info.filename, data)
    return dst


def declaring(numel=None, size=None, drop_data=False, legacy=False):
    """A one-tensor checkpoint whose pickle declares ``numel`` storage elements or a tensor ``size`` (its bytes
    stay 16: a few bytes claiming a terabyte)."""

    def change_pickle(data: bytes) -> bytes:
        new = data
        if numel is not None:  # ('storage', FloatStorage, '0', 'cpu', 4): the element count after 'cpu'
            new = re.sub(rb"(X\x03\x00\x00\x00cpuq.)K\x04", lambda m: m.group(1) + long1(numel), new, count=1)
        if size is not None:  # _rebuild_tensor_v2(storage, 0, (4,), ...): the size tuple after the storage
            new = re.sub(rb"(Q|h.)K\x00K\x04\x85", lambda m: m.group(1) + b"K\x00" + long1(size) + b"\x85", new,
                         count=1)  # fmt: skip
        assert new != data, "the crafted pattern is gone: torch.save's pickle changed"
        return new

    def make(tmp, good):
        path = tmp / "huge.pt"
        torch.save({"w": torch.ones(4)}, path, _use_new_zipfile_serialization=not legacy)
        if legacy:
            path.write_bytes(change_pickle(path.read_bytes()))
            return path
        plain = path.rename(tmp / "plain.pt")
        return rezip(plain, path, lambda name, data: None if drop_data and name.endswith("data/0") else (
            change_pickle(data) if name.endswith("data.pkl") else data))  # fmt: skip

    return make


def raw(content: bytes | Callable[[bytes], bytes], name="w.pt"):
    def make(tmp, good):
        path = tmp / name
        if callable(content):
            buffer = io.BytesIO()
            torch.save(good, buffer)
            path.write_bytes(content(buffer.getvalue()))
        else:
            path.write_bytes(content)
        return path

    return make


def link(target: str | None, name="w.pt"):
    def make(tmp, good):
        path = tmp / name
        os.symlink(target or path, path)  # None: a link to itself, a loop
        return path

    return make


def folder(name="w.pt"):
    def make(tmp, good):
        (tmp / name).mkdir()
        return tmp / name

    return make


def with_payload(wrap, legacy=False):
    def make(tmp, good):
        path = tmp / "hostile.pt"
        torch.save(wrap(good, Touch(tmp / "marker")), path, _use_new_zipfile_serialization=not legacy)
        return path

    return make


def pt2(make_bytes):
    def make(tmp, good):
        return raw(make_bytes, "model.pt2")(tmp, good)

    return make


def _set(value):
    return lambda state, key: state.__setitem__(key, value(state[key]) if callable(value) else value)


KEY = "wedges.conv.weight"
DTYPES = {"int64": torch.int64, "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8,
          "complex64": torch.complex64}  # fmt: skip
CASTABLE = {"float16": torch.float16, "float64": torch.float64, "bfloat16": torch.bfloat16}
RANDOM = bytes(__import__("random").Random(19).randrange(256) for _ in range(4096))

FILES = [
    # state_dicts torch reads, that do not fit the model
    Checkpoint("missing-key", saved(lambda g: edited(g, KEY, lambda s, k: s.pop(k))), USAGE, ("missing", KEY)),
    Checkpoint("unexpected-key", saved(lambda g: {**g, "extra.weight": torch.ones(1)}), USAGE, ("unexpected",)),
    Checkpoint("renamed-keys", saved(lambda g: {f"module.{k}": v for k, v in g.items()}), USAGE, ("missing",)),
    Checkpoint("transposed", saved(lambda g: edited(g, KEY, _set(lambda t: t.transpose(0, 1)))), USAGE, ("shape",)),
    Checkpoint("extra-dim", saved(lambda g: edited(g, KEY, _set(lambda t: t[None]))), USAGE, ("shape",)),
    Checkpoint("scalar", saved(lambda g: edited(g, KEY, _set(torch.tensor(1.0)))), USAGE, ("shape",)),
    Checkpoint("empty-tensor", saved(lambda g: edited(g, KEY, _set(torch.zeros(0)))), USAGE, ("shape",)),
    *[Checkpoint(f"dtype-{name}", saved(lambda g, d=dtype: edited(g, KEY, _set(lambda t: t.to(d)))), USAGE,
                 (KEY, name)) for name, dtype in DTYPES.items()],  # fmt: skip
    *[Checkpoint(f"dtype-{name}-is-cast", saved(lambda g, d=dtype: edited(g, KEY, _set(lambda t: t.to(d)))), OK)
      for name, dtype in CASTABLE.items()],
    Checkpoint("nan-weights", saved(lambda g: edited(g, KEY, _set(lambda t: torch.full_like(t, float("nan"))))),
               LOAD, (KEY, "NaN")),
    Checkpoint("inf-weights", saved(lambda g: edited(g, KEY, _set(lambda t: torch.full_like(t, float("inf"))))),
               LOAD, (KEY, "infinite")),
    Checkpoint("non-tensor-int", saved(lambda g: edited(g, KEY, _set(3))), LOAD, ("no state_dict",)),
    Checkpoint("non-tensor-str", saved(lambda g: edited(g, KEY, _set("w"))), LOAD, ("no state_dict",)),
    Checkpoint("non-tensor-list", saved(lambda g: edited(g, KEY, _set([1.0, 2.0]))), LOAD, ("no state_dict",)),
    Checkpoint("nested-dicts", saved(lambda g: {"layers": {"inner": g}}), LOAD, ("no state_dict",)),
    Checkpoint("empty-dict", saved({}), USAGE, ("missing",)),
    Checkpoint("a-list", saved(lambda g: list(g.values())), LOAD, ("no state_dict",)),
    Checkpoint("none", saved(None), LOAD, ("no state_dict",)),
    Checkpoint("a-tensor", saved(torch.ones(3)), LOAD, ("no state_dict",)),
    Checkpoint("under-state-dict-ok", saved(lambda g: {"state_dict": g, "epoch": 3}), OK),
    Checkpoint("legacy-format-ok", saved(lambda g: g, legacy=True), OK),
    # a few bytes that declare a terabyte: refused before torch allocates, naming the limit
    Checkpoint("declares-1e12-elements", declaring(numel=10**12), USAGE, (LIMIT_WORD,), hostile=True),
    Checkpoint("declares-1e12-no-data", declaring(numel=10**12, drop_data=True), USAGE, (LIMIT_WORD,), hostile=True),
    Checkpoint("declares-2e63-elements", declaring(numel=2**63 - 1), USAGE, (LIMIT_WORD,), hostile=True),
    Checkpoint("tensor-size-1e12", declaring(size=10**12), USAGE, (LIMIT_WORD,), hostile=True),
    Checkpoint("legacy-declares-1e12", declaring(numel=10**12, legacy=True), USAGE, (LIMIT_WORD,), hostile=True),
    Checkpoint("declares-negative", declaring(numel=-(10**12)), LOAD, ("corrupt",)),
    Checkpoint("declares-more-than-it-holds", declaring(numel=1000), LOAD, ("corrupt",)),
    # files that are not checkpoints at all
    Checkpoint("empty-file", raw(b""), LOAD, ("corrupt",)),
    Checkpoint("random-bytes", raw(RANDOM), LOAD, ("corrupt",)),
    Checkpoint("text", raw(b"not a checkpoint\n"), LOAD, ("corrupt",)),
    Checkpoint("zip-of-nothing", raw(lambda b: _empty_zip()), LOAD, ("corrupt",)),
    Checkpoint("truncated-half", raw(lambda b: b[: len(b) // 2]), LOAD, ("corrupt",)),
    Checkpoint("truncated-tail", raw(lambda b: b[:-30]), LOAD, ("corrupt",)),
    Checkpoint("zeroed-middle", raw(lambda b: b[:100] + bytes(len(b) - 200) + b[-100:]), LOAD, ("corrupt",)),
    Checkpoint("directory", folder(), USAGE, ("directory",)),
    Checkpoint("symlink-loop", link(None), USAGE, ("symbolic link",)),
    Checkpoint("dangling-symlink", link("/nonexistent/w.pt"), USAGE, ("symbolic link",)),
    Checkpoint("dev-zero", link("/dev/zero"), USAGE, ("not a regular file",)),
    Checkpoint("dev-full", link("/dev/full"), USAGE, ("not a regular file",)),
    Checkpoint("dev-null", link("/dev/null"), USAGE, ("not a regular file",)),
    # pickled code: refused, and the marker never appears
    Checkpoint("payload-beside-weights", with_payload(lambda g, p: {**g, "evil": p}), LOAD, ("pickled",), True),
    Checkpoint("payload-as-checkpoint", with_payload(lambda g, p: p), LOAD, ("pickled",), True),
    Checkpoint("payload-in-state-dict", with_payload(lambda g, p: {"state_dict": g, "hook": p}), LOAD,
               ("pickled",), True),  # fmt: skip
    Checkpoint("payload-legacy-format", with_payload(lambda g, p: {**g, "evil": p}, legacy=True), LOAD,
               ("pickled",), True),  # fmt: skip
    # .pt2 models that are not archives
    Checkpoint("pt2-empty", pt2(b""), USAGE, ("empty",), spec="{path}"),
    Checkpoint("pt2-random", pt2(RANDOM), USAGE, ("not a readable",), spec="{path}"),
    Checkpoint("pt2-a-state-dict", pt2(lambda b: b), USAGE, ("torch.export",), spec="{path}"),
    Checkpoint("pt2-truncated", pt2(lambda b: b[: len(b) // 2]), USAGE, ("torch.export",), spec="{path}"),
    Checkpoint("pt2-directory", folder("model.pt2"), USAGE, ("directory",), spec="{path}"),
    Checkpoint("pt2-dev-zero", link("/dev/zero", "model.pt2"), USAGE, ("not a regular file",), spec="{path}"),
    Checkpoint("pt2-symlink-loop", link(None, "model.pt2"), USAGE, ("does not exist",), spec="{path}"),
]


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x/nothing", b"")
    return buffer.getvalue()


# --- the check -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good():
    from circuits import load

    return {k: v.clone() for k, v in load(UNION).module.state_dict().items()}


def invoke(spec: str, path: Path):
    argv = ["layers", spec.replace("{path}", str(path))]
    if spec == UNION:
        argv += ["--weights", str(path)]
    return CliRunner().invoke(main, argv)


def check(result, exits, words, folder: Path) -> str:
    tally.case("checkpoints")
    tally.seen(result.output, result.exit_code)
    context = f"exit {result.exit_code}\n{result.output}"
    assert result.exit_code in exits, context
    assert "Traceback" not in result.output and "internal error" not in result.output, context
    assert not [p for p in folder.rglob("*.tmp")], context
    if result.exit_code == 0:
        return ""
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, context  # click's own usage errors add their Usage/Try lines
    for word in words:
        assert word in errors[0], context
    return errors[0]


@pytest.mark.parametrize("case", FILES, ids=[c.id for c in FILES])
def test_checkpoint_is_refused_in_one_line(case, good, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIRCUITS_DEBUG", raising=False)
    path = case.make(tmp_path, good)
    result = invoke(case.spec, path)
    ran = (tmp_path / "marker").exists()
    if case.hostile:
        tally.hostile(refused=result.exit_code != 0, ran=ran)
    assert not ran, "the checkpoint's pickled code ran"
    check(result, case.exits, case.words, tmp_path)


def test_the_size_limit_is_raised_with_its_variable(good, tmp_path, monkeypatch):
    """The refusal says how to raise the limit; raised, the same file reaches torch (which finds it damaged)."""
    path = declaring(numel=1000)(tmp_path, good)
    monkeypatch.setenv(LIMIT_WORD, "100")
    line = check(invoke(UNION, path), USAGE, (LIMIT_WORD,), tmp_path)
    assert re.search(rf"{LIMIT_WORD}=\d+", line)
    monkeypatch.setenv(LIMIT_WORD, "10000")
    check(invoke(UNION, path), LOAD, ("corrupt",), tmp_path)


MUTATION = st.tuples(st.sampled_from(["flip", "cut", "zero", "splice"]), st.floats(0, 1), st.integers(1, 64))


@settings(max_examples=SCALE or 120, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(kind=st.sampled_from(["zip", "legacy", "pt2"]), mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_checkpoints_end_in_one_line(kind, mutations, tmp_path_factory):
    """Seeded byte-level damage to a good checkpoint (or .pt2): any exit 0, 1 or 2, but always one clean line."""
    tmp = tmp_path_factory.mktemp("mutated")
    data = bytearray(_good_bytes(kind))
    for op, where, n in mutations:
        at = int(where * max(len(data) - 1, 0))
        if op == "flip" and data:
            data[at] ^= 0xFF
        elif op == "cut":
            del data[at:]
        elif op == "zero":
            data[at:at + n] = bytes(len(data[at:at + n]))
        else:
            data[at:at] = RANDOM[:n]
    path = tmp / ("model.pt2" if kind == "pt2" else "w.pt")
    path.write_bytes(bytes(data))
    check(invoke("{path}" if kind == "pt2" else UNION, path), frozenset({0, 1, 2}), (), tmp)


_GOOD: dict[str, bytes] = {}


def _good_bytes(kind: str) -> bytes:
    if kind not in _GOOD:
        from circuits import load

        model = load(UNION)
        buffer = io.BytesIO()
        if kind == "pt2":
            example = torch.zeros(1, *model.input_shape)
            torch.export.save(torch.export.export(model.module.eval(), (example,)), buffer)
        else:
            torch.save(model.module.state_dict(), buffer, _use_new_zipfile_serialization=kind == "zip")
        _GOOD[kind] = buffer.getvalue()
    return _GOOD[kind]


PEAK = """
import resource, sys
from click.testing import CliRunner
from circuits.cli import main
for path in sys.argv[1:]:
    result = CliRunner().invoke(main, ["layers", "planted:union", "--weights", path])
    assert result.exit_code == 2 and "CIRCUITS_MAX_WEIGHTS_BYTES" in result.output, result.output
try:  # this process's own peak: ru_maxrss can carry the parent's peak across fork and exec on Linux
    print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_files_declaring_terabytes_never_take_the_memory(good, tmp_path):
    """In a fresh process, loading every terabyte-declaring file keeps the peak RSS under 1 GB."""
    paths = []
    for case in [c for c in FILES if c.hostile and LIMIT_WORD in c.words]:
        folder = tmp_path / case.id
        folder.mkdir()
        paths.append(str(case.make(folder, good)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", PEAK, *paths], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    peak_kib = int(done.stdout.split()[-1])
    assert peak_kib < 1024 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
