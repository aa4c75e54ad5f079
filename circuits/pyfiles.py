"""Python and output files by path: import a user's model file or an emitted module; write outputs whole."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def import_file(path: Path, prefix: str, register: bool = True):
    """A fresh module from ``path``; ``register`` keeps it in ``sys.modules`` (needed by torch.fx and
    torch.export, which look classes up by module name). Exceptions from the file propagate."""
    name = f"{prefix}_{abs(hash(str(Path(path).resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        if not register:
            sys.modules.pop(name, None)
    return module


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so a failure (or
    a kill) leaves the old file or none, never half a file."""
    import os
    import stat
    import tempfile

    path = Path(path)
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):  # a device or pipe (/dev/stdout): write through
        with open(path, "wb") as handle:
            handle.write(data)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # what a plain open() would give, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
