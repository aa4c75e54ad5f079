"""Every command that takes --device, run on two devices: does its JSON agree up to float rounding?

Run:  python benchmarks/device_agreement.py            (cpu against cuda; on a machine with a GPU)
      python benchmarks/device_agreement.py cpu,cpu    (a dry run of every invocation on the CPU)

One line per command: each side's exit and seconds, then SAME (every number within 1e-3 relative or 1e-4
absolute, every other value equal; provenance, paths and timings skipped) or the first difference. Last run
on one H200 (2026-12-04): 8 of 10 the same; `label` differed in one neuron's IoU (0.0343 against 0.0337: a
pixel on the activation threshold), `pictures` in the reached activations (GPU pictures are not
bit-reproducible: docs/pictures.md). Not part of the suite: CI has no GPU.
"""

import json
import math
import sys
import tempfile
import time
import traceback

from click.testing import CliRunner

from circuits.cli import main
from circuits.errors import UsageError
from circuits.graph.run import resolve_device

DEVICES = sys.argv[1].split(",") if len(sys.argv) > 1 else ["cpu", "cuda"]


def usage_error(message: str) -> None:
    print(f"device_agreement.py: {message}", file=sys.stderr)
    sys.exit(2)


if len(DEVICES) != 2:
    usage_error("give two devices, e.g. cpu,cuda (or cpu,cpu for a dry run)")
try:
    for device in DEVICES:
        resolve_device(device)
except UsageError as exc:  # no GPU here, or an unknown device: the error names the fix
    usage_error(str(exc))
W = tempfile.mkdtemp()
COMMANDS = {
    "extract": ["extract", "zoo:plain-cnn", "--neuron", "conv3:7", "--top-k", "4", "--data", "toyworld:128", "--emit", "{w}/c_{d}.py", "--json"],
    "verify": ["verify", "{w}/c_{first}.py", "--model", "zoo:plain-cnn", "--data", "toyworld:128:7", "--no-record", "--json"],
    "motifs": ["motifs", "zoo:plain-cnn", "--data", "toyworld:128", "--json"],
    "universality": ["universality", "zoo:plain-cnn", "zoo:plain-cnn-s1", "--data", "toyworld:128", "--json"],
    "diff": ["diff", "zoo:plain-cnn", "zoo:plain-cnn-s1", "--data", "toyworld:128", "--json"],
    "label": ["label", "zoo:plain-cnn", "--data", "toyworld:256", "--json"],
    "find": ["find", "zoo:plain-cnn", "--concept", "bird", "--data", "toyworld:256", "--json"],
    "compile": ["compile", "zoo:plain-cnn", "-o", "{w}/prog_{d}", "--top-k", "8", "--json"],
    "pictures": ["pictures", "zoo:plain-cnn", "--layer", "conv2", "--steps", "16", "--data", "toyworld:128", "-o", "{w}/pics_{d}", "--json"],
    "zoo catalog": ["zoo", "catalog", "--model", "plain-cnn", "-o", "{w}/cat_{d}.db", "--json"],
}
SKIP = {"provenance", "path", "paths", "sheets", "emitted", "seconds", "wall_s", "elapsed", "out", "catalog"}

def close(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            if k in SKIP:
                continue
            r = close(a[k], b[k], f"{where}.{k}")
            if r:
                return r
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            r = close(x, y, f"{where}[{i}]")
            if r:
                return r
        return None
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return None
        return None if math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-4) else f"{where}: {a} vs {b}"
    if isinstance(a, str) and isinstance(b, str) and (W in a or W in b):
        return None
    return None if a == b else f"{where}: {str(a)[:80]} vs {str(b)[:80]}"

for name, argv in COMMANDS.items():
    outs, line = [], name
    for i, d in enumerate(DEVICES):
        tag = f"{i}_{d}"  # each side writes its own files; verify reads the first side's extract
        args = [x.format(w=W, d=tag, first=f"0_{DEVICES[0]}") for x in argv] + ["--device", d]
        t = time.time()
        r = CliRunner().invoke(main, args)
        dt = time.time() - t
        if r.exit_code != 0:
            err = r.output.strip().splitlines()[-1:] or [repr(r.exception)]
            crashed = r.exc_info and r.exception and not isinstance(r.exception, SystemExit)
            tb = "".join(traceback.format_exception(*r.exc_info)[-3:]) if crashed else ""
            line += f" | {d}: EXIT {r.exit_code} {err[0][:200]} {tb[-400:]}"
            continue
        try:
            outs.append(json.loads(r.stdout))
        except json.JSONDecodeError:
            outs.append(r.stdout)
        line += f" | {d}: ok {dt:.1f}s"
    if len(outs) == 2:
        diff = close(*outs)
        line += " | SAME (rel 1e-3)" if diff is None else f" | DIFFERS {diff}"
    print(line, flush=True)
