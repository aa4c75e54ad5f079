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


def pytest_sessionfinish(session, exitstatus):
    """Write the fuzz suites' figures (tests/fuzz_tally.py) where $CIRCUITS_RELIABILITY_REPORT says."""
    path = os.environ.get("CIRCUITS_RELIABILITY_REPORT")
    if path:
        from fuzz_tally import tally

        tally.write(path)
