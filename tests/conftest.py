"""Test-wide settings: a private kernel cache, one torch thread (CI has 2 cores), tests/ importable."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ["CIRCUITS_CACHE_DIR"] = str(tmp_path_factory.mktemp("kernel-cache"))
    import torch

    torch.set_num_threads(1)
    yield
