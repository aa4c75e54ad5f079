"""Import a Python file by its path: a user's model file, or an emitted circuit module."""

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
