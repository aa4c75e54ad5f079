"""Check a ``--weights`` file's declared sizes before torch reads it.

torch allocates what a checkpoint declares: a storage's element count in the pickle, a tensor's size. A
hostile or damaged file can declare a terabyte in a few bytes. :func:`check_declared_sizes` reads the
file's pickle with a scanner that imports and calls nothing (every global becomes an inert stub, every
persistent id a record) and refuses, before torch allocates anything, a file whose storages or tensors
declare more than ``CIRCUITS_MAX_WEIGHTS_BYTES`` (4 GiB by default) in all. The file itself must be a
regular file of at most that size, so the scan's own memory is bounded too, and a device such as
``/dev/zero`` is never read.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from pathlib import Path

from circuits.errors import BadSpecError, CircuitsError
from circuits.limits import GIB, check_size

LIMIT = ("MAX_WEIGHTS_BYTES", 4 * GIB)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save before torch 1.6 (not a zip)
ELEMENT_BYTES = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
                 "Byte": 1, "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8, "Untyped": 1}  # fmt: skip
WIDEST = 16


def regular_file(path: Path, what: str, fix: str) -> int:
    """The size of ``path``, a regular file, or a one-line BadSpecError naming what it is instead."""
    if path.is_symlink() and not path.exists():
        raise BadSpecError(f"{what} '{path}' is a symbolic link that leads nowhere (a loop or a missing target); {fix}")
    if not path.exists():
        raise BadSpecError(f"{what} '{path}' does not exist; {fix}")
    if path.is_dir():
        raise BadSpecError(f"{what} '{path}' is a directory, not a file; {fix}")
    if not path.is_file():
        raise BadSpecError(f"{what} '{path}' is not a regular file (a device or a pipe); {fix}")
    size = path.stat().st_size
    check_size(f"{what} '{path}'", size, *LIMIT)
    return size


class _Stub:
    """What the scanner returns for any global: it records how it was called, and does nothing."""

    def __init__(self, name: str, args=()):
        self.name, self.args = name, args

    def __call__(self, *args, **kwargs):
        return _Stub(self.name, args)

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass


class _Scanner(pickle.Unpickler):
    """Reads a torch pickle as data: globals are stubs, storages are ``(type, numel)`` records."""

    def __init__(self, file):
        super().__init__(file)
        self.declared = 0  # bytes

    def find_class(self, module, name):
        return _Stub(f"{module}.{name}")

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            kind = getattr(pid[1], "name", "").rpartition(".")[2].removesuffix("Storage")
            numel = pid[4] if isinstance(pid[4], int) else 0
            self.declared += max(numel, 0) * ELEMENT_BYTES.get(kind, WIDEST)
            return _Stub(kind)
        return _Stub("unknown")


def _tensor_bytes(obj) -> int:
    """The largest tensor the object declares (``_rebuild_tensor_v2(storage, offset, size, stride, ...)``)."""
    worst, seen, todo = 0, set(), [obj]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, _Stub):
            todo.extend(node.args)
            size = node.args[2] if len(node.args) > 2 and node.name.startswith("torch._utils._rebuild") else None
            if isinstance(size, tuple) and all(isinstance(d, int) for d in size):
                kind = node.args[0].name if isinstance(node.args[0], _Stub) else ""
                worst = max(worst, math.prod(max(d, 0) for d in size) * ELEMENT_BYTES.get(kind, WIDEST))
        elif isinstance(node, dict):
            todo.extend(node.keys())
            todo.extend(node.values())
        elif isinstance(node, (list, tuple, set, frozenset)):
            todo.extend(node)
    return worst


def _scan(path: Path, blob: bytes) -> None:
    scanner = _Scanner(io.BytesIO(blob))
    try:
        obj = scanner.load()
    except Exception:  # not a pickle torch could read either: torch.load says it is corrupt
        return
    declared = max(scanner.declared, _tensor_bytes(obj))
    check_size(f"loading weights file '{path}' (the sizes its tensors declare)", declared, *LIMIT)


def _main_pickle(path: Path) -> bytes:
    """The pickle that holds the state_dict: ``data.pkl`` of a zip, or the fourth pickle of a legacy file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            check_size(f"weights file '{path}' unpacked", sum(info.file_size for info in infos), *LIMIT)
            pickles = [info for info in infos if info.filename.endswith("data.pkl")]
            return archive.read(pickles[0]) if len(pickles) == 1 else b""
    with open(path, "rb") as file:
        stream = io.BytesIO(file.read())
    if _Scanner(stream).load() != LEGACY_MAGIC:
        return b""
    _Scanner(stream).load(), _Scanner(stream).load()  # protocol version, system info
    return stream.read()


def check_declared_sizes(path: Path) -> None:
    """Refuse ``path`` if it, or the tensors it declares, exceed ``CIRCUITS_MAX_WEIGHTS_BYTES``."""
    regular_file(path, "weights file", "check the --weights path")
    try:
        blob = _main_pickle(path)
    except CircuitsError:
        raise
    except Exception:  # a damaged zip or pickle: torch.load reads it next and says it is corrupt
        return
    _scan(path, blob)
