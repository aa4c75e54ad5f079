"""The Dask cluster a scan runs on: a scheduler's address, or a ``LocalCluster`` of worker processes.

Dask is imported here and only here, when a cluster is asked for, so the rest of the tool (and ``--workers 0``)
works without it installed.
"""

from __future__ import annotations

import contextlib
import re

from circuits.errors import CircuitsError, UsageError

INSTALL = "pip install 'circuits[scale]'"
CONNECT_TIMEOUT = "5s"
# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536 (to hand memory back sooner). Setting it at
# all turns off glibc's adaptive mmap threshold, so every large tensor is a fresh mmap and its page faults:
# a zoo shard took 1.7x the CPU time under it (measured: benchmarks/RESULTS_scan.md). Workers started here
# leave it unset; docs/scan.md says how to do the same for `dask worker`.
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def distributed():
    try:
        import distributed
    except ImportError:
        raise CircuitsError(f"running a scan on workers needs Dask distributed, which is not installed: {INSTALL} "
                            "(or pass --workers 0 to scan in this process)") from None  # fmt: skip
    return distributed


def check_address(address: str) -> str:
    """A ``tcp://HOST[:PORT]`` address, or one line saying what to give instead."""
    if isinstance(address, str) and re.match(r"(tls|ucx|inproc)://", address.strip()):
        raise UsageError(f"--scheduler takes a tcp:// address; '{address}' needs Dask settings a command line cannot "
                         "pass (TLS certificates, UCX): make a distributed.Client yourself and give it to "
                         "circuits.scan(..., scheduler=client)")  # fmt: skip
    host = r"(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+)"  # a name, an IPv4 address or a bracketed IPv6 one
    if not isinstance(address, str) or not re.fullmatch(rf"tcp://{host}(:\d{{1,5}})?", address.strip()):
        raise UsageError(f"--scheduler takes a Dask scheduler address such as tcp://10.0.0.5:8786, got '{address}' "
                         "(start one with `dask scheduler`)")  # fmt: skip
    return address.strip()


@contextlib.contextmanager
def client(workers: int = 0, scheduler=None):
    """A ``distributed.Client``: ``scheduler`` (an address, or a Client you made, left open), else a
    ``LocalCluster`` of ``workers`` single-threaded worker processes on loopback, closed on exit."""
    dd = distributed()
    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler  # a Client of the caller's: they close it
        return
    if scheduler is not None:
        address = check_address(scheduler)
        try:
            made = dd.Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}); start one there "
                             "with `dask scheduler` and workers with `dask worker ADDRESS`, or pass --workers N for "
                             "a cluster on this machine") from None  # fmt: skip
        with contextlib.closing(made):
            yield made
        return
    import logging

    import dask

    with dask.config.set(WORKER_CONFIG):
        cluster = dd.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR)  # fmt: skip
    try:
        with dd.Client(cluster) as made:
            yield made
    finally:
        cluster.close()
