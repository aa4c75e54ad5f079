"""On-disk cache of traced kernels, keyed by the model's weights hash and the arguments.

Set ``CIRCUITS_CACHE_DIR`` to move it (default ``~/.cache/circuits``) and ``CIRCUITS_CACHE=0`` to turn it
off. Entries are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from circuits.trace.kernels import KernelSet


def _directory() -> Path | None:
    if os.environ.get("CIRCUITS_CACHE", "1") == "0":
        return None
    return Path(os.environ.get("CIRCUITS_CACHE_DIR") or Path.home() / ".cache" / "circuits")


def _key(weights_hash: str, **arguments) -> str:
    from circuits import __version__

    text = json.dumps({"weights": weights_hash, "version": __version__, **arguments}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load(weights_hash: str, **arguments) -> list[KernelSet] | None:
    directory = _directory()
    if directory is None:
        return None
    path = directory / f"kernels-{_key(weights_hash, **arguments)}.pt"
    if not path.is_file():
        return None
    try:
        entries = torch.load(path, map_location="cpu", weights_only=True)
        return [KernelSet(**entry) for entry in entries]
    except Exception:  # a damaged cache entry is recomputed, never trusted
        return None


MAX_ENTRY_BYTES = 64 * 2**20  # larger kernels (a 224-pixel net's expanded weights) are cheaper to recompute
# than to keep: one MobileNetV2 layer is most of a GB, the whole net would fill a home folder


def store(kernel_sets: list[KernelSet], weights_hash: str, **arguments) -> None:
    directory = _directory()
    size = sum(k.kernels.numel() * k.kernels.element_size() for k in kernel_sets if k.kernels is not None)
    if directory is None or size > MAX_ENTRY_BYTES:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        entries = [dict(vars(k)) for k in kernel_sets]
        with tempfile.NamedTemporaryFile(dir=directory, delete=False, suffix=".tmp") as handle:
            torch.save(entries, handle)
        os.replace(handle.name, directory / f"kernels-{_key(weights_hash, **arguments)}.pt")
    except OSError:
        pass  # a read-only home is no reason to fail a trace
