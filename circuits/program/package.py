"""A program package on disk: written in one step, imported by path, recognised before it is replaced."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

from circuits.errors import UsageError

MANIFEST = "manifest.json"


def check_folder(folder) -> Path:
    """``folder`` resolved, after checking a package may be written there: new, empty, or an earlier program
    (which is replaced whole), in a folder that exists or can be made."""
    folder = Path(folder).resolve()
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / MANIFEST).is_file())):
        raise UsageError(f"-o {folder}: exists and is not a program package; give a new or empty folder")
    return folder


def write_package(files: dict[str, bytes], folder) -> Path:
    """Write the package to ``folder`` whole: into a scratch folder beside it, then renamed into place, so a
    failure or a kill leaves the old package (or nothing), never half of one. An existing folder is
    replaced only when it is empty or a program package itself. A folder that holds the current directory
    (``-o .``) keeps its identity: its contents are swapped instead, so a shell inside it is not left in a
    deleted directory."""
    folder = check_folder(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, data in files.items():
            (scratch / name).write_bytes(data)
        if folder.exists() and _holds_cwd(folder):
            _swap_contents(scratch, folder)
        else:
            _swap_folders(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def _holds_cwd(folder: Path) -> bool:
    try:
        here = Path.cwd().resolve()
    except OSError:
        return False
    return here == folder or folder in here.parents


def _swap_folders(scratch: Path, folder: Path) -> None:
    """``scratch`` renamed to ``folder``; the earlier folder removed only once the new one is in place."""
    old = folder.with_name(f".{folder.name}.old-{scratch.name[-8:]}") if folder.exists() else None
    if old is not None:
        folder.rename(old)
    try:
        scratch.rename(folder)
    except BaseException:
        if old is not None and not folder.exists():
            old.rename(folder)  # the earlier package back in place
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _swap_contents(scratch: Path, folder: Path) -> None:
    """The earlier files of ``folder`` moved aside, the new ones moved in, one rename each; on a failure the
    earlier files come back."""
    old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
    moved_out, moved_in = [], []
    try:
        for entry in list(folder.iterdir()):
            entry.rename(old / entry.name)
            moved_out.append(entry.name)
        for entry in list(scratch.iterdir()):
            entry.rename(folder / entry.name)
            moved_in.append(entry.name)
    except BaseException:
        for name in moved_in:
            (folder / name).unlink(missing_ok=True)
        for name in moved_out:
            (old / name).rename(folder / name)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(folder) -> dict:
    """The package's manifest, or a UsageError saying the folder is not a program package."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UsageError(f"{folder} is not a program package (no {MANIFEST}): write one with `circuits compile MODEL -o DIR`")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not readable JSON ({e}); compile the program again") from None


def import_package(folder):
    """The package imported by path, under a private name (so two programs never collide in sys.modules)."""
    folder = Path(folder).resolve()
    read_manifest(folder)
    name = f"_circuits_program_{abs(hash(str(folder)))}"
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
