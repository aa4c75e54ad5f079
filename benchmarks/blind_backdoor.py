"""The blind auditor on patch-trigger backdoors, on plants its rules were chosen on and on plants it never saw.

Each round plants a backdoor (:func:`circuits.compare.audit.plant`, kind ``backdoor``, plant seed ``s``)
in the zoo model ``FAMILY-s{s % 3}`` (the zoo trains three seeds a family, so plant seeds 3 to 11 reuse
those networks with other fine-tune data and, where it is free to, another target class), plays
:func:`circuits.compare.blind.find_blind` without a reference and scores it with
:func:`circuits.compare.audit.score`. The issue's bar, per family: the target class named *and* 2 of the
top 3 suspects respond to the real trigger, on at least 2 of 3 seeds.

The seeds come in sets of three, and the report keeps them apart, because the rules were tuned by looking:
0-2 are the plants the rules were chosen on, 3-5 were looked at while choosing between rules (the first
rule failed there), 6-8 were first run after the natural-feature rule was chosen (the order of the
suspects, the layers the output reads first, was then measured on all of 0-8 before it was adopted), and
9-11 were first run after both choices. The class is named by its patch's logit margin since 2026-12-08:
that rule was picked among eleven on 0-11 and checked on 12-17 before it was adopted, and 18-23 were
first run after it. Plants are cached with ``benchmarks/audit_sweep.py``'s cache (same key), so the two
share them.

    python3 benchmarks/blind_backdoor.py --jobs 2                         # 6 families x 24 seeds, ~45 min
    python3 benchmarks/blind_backdoor.py --families resnet-cnn --seeds 0  # one round
    python3 benchmarks/blind_backdoor.py --report-only                    # the Markdown again
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_sweep import DATA, DEFAULT_CACHE, FAMILIES, _worker_init, atomic_write, planted  # noqa: E402

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 1
ZOO_SEEDS = 3  # networks per zoo family (circuits.zoo.recipes.SEEDS)
SETS = {"chosen on": (0, 1, 2), "looked at": (3, 4, 5), "run after the first choice": (6, 7, 8),
        "run after the second choice": (9, 10, 11), "checked the margin rule": (12, 13, 14),
        "checked the margin rule, again": (15, 16, 17), "never seen": (18, 19, 20), "never seen, again": (21, 22, 23)}
DEFAULT_JSON = HERE / "results" / "blind_backdoor.json"
DEFAULT_MD = HERE / "RESULTS_blind.md"


def play(family: str, seed: int, cache: str, data: str) -> dict:
    """One round: plant (or read the cached plant), the blind audit, its score."""
    from circuits import load
    from circuits.compare import audit
    from circuits.compare.blind import find_blind
    from circuits.models import LoadedModel

    spec = f"zoo:{family}-s{seed % ZOO_SEEDS}"
    row = {"family": family, "model": spec, "seed": seed, "status": "played", "seconds": {}}
    try:
        reference = load(spec)
        module, key = planted(reference, spec, "backdoor", seed, Path(cache), row["seconds"], False)
        tampered = LoadedModel(module, spec="tampered", input_shape=reference.input_shape)
        start = time.perf_counter()
        report = find_blind(tampered, data)
        row["seconds"]["blind"] = time.perf_counter() - start
        scored = audit.score(report, key, tampered)
        row["responders"] = responders(tampered, key)
        row.update({"target_class": key["target_class"], "trigger_success": key["trigger"]["success"],
                    "named_class": report["target_class"], "named": scored["target_class_named"],
                    "responding@3": scored["responding@3"], "chance": scored["chance"],
                    "suspects@3": scored["suspects@3"], "classes": report["classes"],
                    "trigger": {k: v for k, v in report["trigger"].items() if k != "pattern"}})  # fmt: skip
    except Exception:  # noqa: BLE001 - a failed round is reported, not fatal to the sweep
        row.update(status="error", reason=traceback.format_exc(limit=3).strip().splitlines()[-1])
    return row


def responders(tampered, key: dict) -> int:
    """How many neurons a suspect could be (every hidden layer but the first) respond to the real trigger:
    with fewer than 2, no ranking reaches 2 of 3."""
    from circuits import load
    from circuits.compare import audit
    from circuits.compare.response import RESPONDS, responses, suspect_layers
    from circuits.graph import build_graph

    graph = build_graph(tampered)
    names = [f"{layer}:{c}" for layer in suspect_layers(graph) for c in range(graph.layers[layer].channels)]
    found = responses(tampered, names, audit.stimulus_contrasts(key, audit._recipe(load(key["model"]))))
    return sum(d >= RESPONDS for d in found["responses"].values())


def report(results: dict) -> str:
    rows = [r for r in results["rounds"] if r["status"] == "played"]
    out = ["# The blind auditor on patch-trigger backdoors", "",
           "Written by `benchmarks/blind_backdoor.py` (its docstring says how). Each cell: target class named "
           "(yes/no), how many of the top 3 suspects respond to the real trigger (>= 3 clean sd), and in brackets "
           "how many neurons outside the first hidden layer respond at all (with fewer than 2, no ranking can "
           "reach 2 of 3); **bold** where both hold (named and >= 2). A family meets the issue's bar in a set "
           "when both hold on >= 2 of its 3 seeds; the bar is *reachable* there when >= 2 of its 3 plants have 2 "
           "or more responders at all (otherwise no auditor's ranking could meet it).", ""]  # fmt: skip
    for name, seeds in SETS.items():
        here = [r for r in rows if r["seed"] in seeds]
        if not here:
            continue
        out += [f"## Seeds {seeds[0]}-{seeds[-1]}: {name}", "",
                "| family | " + " | ".join(f"seed {s}" for s in seeds) + " | both | bar met | reachable |",
                "|---|" + "---|" * (len(seeds) + 3)]  # fmt: skip
        met = named = responding = played = impossible = reachable = 0
        for family in FAMILIES:
            cells, both, possible = [], 0, 0
            for s in seeds:
                r = next((r for r in here if r["family"] == family and r["seed"] == s), None)
                if r is None:
                    cells.append("-")
                    continue
                two = (r["responding@3"] or 0) >= 2
                ok = bool(r["named"]) and two
                both += ok
                named += bool(r["named"])
                responding += two
                played += 1
                impossible += r["responders"] < 2
                possible += r["responders"] >= 2
                cell = f"{'yes' if r['named'] else 'no'} / {r['responding@3']} ({r['responders']})"
                cells.append(f"**{cell}**" if ok else cell)
            met += both >= 2
            reachable += possible >= 2
            out.append(f"| {family} | " + " | ".join(cells) + f" | {both} of {len(seeds)} | {'yes' if both >= 2 else 'no'}"
                       f" | {'yes' if possible >= 2 else 'no'} |")  # fmt: skip
        out += ["", f"Named {named} of {played}; 2 of the top 3 respond in {responding} of {played}; the bar is met by "
                f"{met} of {len(FAMILIES)} families, and any ranking could meet it in {reachable}. In {impossible} of "
                f"{played} fewer than 2 neurons respond at all.", ""]  # fmt: skip
    errors = [r for r in results["rounds"] if r["status"] == "error"]
    if errors:
        out += ["Rounds that failed:", ""] + [f"- {r['family']} seed {r['seed']}: {r['reason']}" for r in errors] + [""]
    run = results["run"]
    out += ["## How", "", f"`{run['command']}` on {run['date'][:10]}, {run['rounds']} rounds, "
            f"{run['wall_seconds'] / 60:.0f} min wall on {run['jobs']} job(s), torch {run['torch']}, "
            f"git {run['git']}.", ""]  # fmt: skip
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    listed = lambda text: [t for t in text.split(",") if t]  # noqa: E731
    parser.add_argument("--families", type=listed, default=list(FAMILIES))
    parser.add_argument("--seeds", type=lambda t: [int(s) for s in listed(t)], default=list(range(24)))
    parser.add_argument("--data", default=DATA, help=f"the auditor's probe images (default {DATA})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where tampered weights and keys go")
    parser.add_argument("--jobs", type=int, default=1, help="rounds run at once, in worker processes")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--out", type=Path, default=DEFAULT_MD)
    parser.add_argument("--report-only", action="store_true", help="rewrite --out from --json; run nothing")
    args = parser.parse_args(argv)
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown family {unknown[0]} (families: {', '.join(FAMILIES)})")
    if args.report_only:
        if not args.json.exists():
            parser.error(f"{args.json} does not exist: run the sweep first")
        atomic_write(args.out, report(json.loads(args.json.read_text())))
        return 0
    import torch
    from bench_trace import git_state

    started = time.perf_counter()
    jobs = [(f, s) for f in args.families for s in args.seeds]
    rows = []
    if args.jobs <= 1:
        rows = [play(f, s, str(args.cache), args.data) for f, s in jobs]
    else:
        with ProcessPoolExecutor(args.jobs, initializer=_worker_init, initargs=(1,)) as pool:
            futures = [pool.submit(play, f, s, str(args.cache), args.data) for f, s in jobs]
            for future in as_completed(futures):
                rows.append(future.result())
                r = rows[-1]
                print(f"{r['family']} seed {r['seed']}: {r.get('named')} {r.get('responding@3')}", flush=True)
    rows.sort(key=lambda r: (FAMILIES.index(r["family"]), r["seed"]))
    results = {"schema_version": SCHEMA_VERSION, "rounds": rows,
               "run": {"command": shlex.join(["python3", "benchmarks/blind_backdoor.py", *(argv or sys.argv[1:])]),
                       "date": datetime.datetime.now(datetime.UTC).isoformat(), "rounds": len(rows),
                       "wall_seconds": time.perf_counter() - started, "jobs": args.jobs, "torch": torch.__version__,
                       "python": platform.python_version(),
                       "git": git_state(("compare", "graph", "models", "zoo"))}}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.json, json.dumps(results, indent=1))
    atomic_write(args.out, report(results))
    print(report(results).split("## How")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
