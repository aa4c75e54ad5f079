"""Run `circuits catalog serve` in a child process and poll it, for the tests that need a live datasette."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(catalog, port: int, own_group: bool = True) -> subprocess.Popen:
    """``own_group``: in a session of its own, so a test can stop the whole group (circuits and datasette)."""
    return subprocess.Popen(
        [sys.executable, "-c", "from circuits.cli import main; main()", "catalog", "serve", "--port", str(port),
         "--catalog", str(catalog)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=own_group)  # fmt: skip


def fetch_json(url: str, proc: subprocess.Popen, timeout: float = 30):
    """The JSON at ``url`` once the server answers, or None if it never does (or the process ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except OSError:
            time.sleep(0.2)
    return None


def stop_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    proc.wait(timeout=10)
