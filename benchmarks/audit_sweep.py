"""The auditing game over the zoo: every CNN family x every plant kind x seeds, the diff against its baseline.

Each round plants a secret change in a zoo model (:func:`circuits.compare.audit.plant`; seed ``s`` plants
with seed ``s`` in the family's model ``FAMILY-s{s}``, so three seeds are three trained networks and three
choices of neuron, class and fine-tune data; ``--model-seed N`` pins every round to ``FAMILY-sN``), then
plays the auditor with the reference (:func:`circuits.compare.audit.find`, the diff) and scores it with
:func:`circuits.compare.audit.score`, beside the naive baseline every diff carries (relative change of each
neuron's input weights at the same index) scored the same way. A blind auditor
(``circuits.compare.blind.find_blind``) is scored too when it exists (``--blind``/``--no-blind``).

The diff is computed once per round and turned into ``find``'s report exactly as ``find`` does
(``--check-find`` also calls ``find`` and checks the two agree). Tampered weights and keys are cached per
family, kind, seed, the original weights' hash and the plant settings, so a rerun skips planting
(``--fresh`` plants again). Results go to ``benchmarks/results/audit_sweep.json`` and
``benchmarks/RESULTS_audit.md``; ``--report-only`` rewrites the Markdown from the JSON.

    python3 benchmarks/audit_sweep.py --families plain-cnn --kinds graft,backdoor --seeds 0   # a quick look
    nice -n 10 python3 benchmarks/audit_sweep.py --jobs 1                                     # the full sweep
    python3 benchmarks/audit_sweep.py --report-only                                          # the md again
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAMILIES = ("plain-cnn", "plain-cnn-sparse", "facing-cnn", "inception-cnn", "resnet-cnn", "curve-cnn")
KINDS = ("fine-tune", "graft", "flip-edge", "union-case", "mirror-swap", "backdoor", "conjunction")
CARRIERS = ("backdoor", "conjunction")  # kinds whose key names a class and a stimulus, no neuron
DATA = "toyworld:256:12345"  # the auditor's probe images (held out: the zoo trains on other seeds)
SCHEMA_VERSION = 1
TOP = 5  # suspects kept per round in the JSON
DEFAULT_JSON = HERE / "results" / "audit_sweep.json"
DEFAULT_MD = HERE / "RESULTS_audit.md"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "circuits" / "audit_sweep"


# -- one round --------------------------------------------------------------------------------------------


def play(family: str, kind: str, seed: int, model_seed: int | None, cache: str, data: str, blind: bool,
         check_find: bool, fresh: bool) -> dict:  # fmt: skip
    """Plant (or read the cached plant), find with the reference, score the diff and the baseline."""
    spec = f"zoo:{family}-s{seed if model_seed is None else model_seed}"
    row = {"family": family, "model": spec, "kind": kind, "seed": seed, "data": data, "status": "played",
           "seconds": {}}  # fmt: skip
    try:
        _play(row, spec, kind, seed, Path(cache), data, blind, check_find, fresh)
    except Exception as exc:  # one broken round is recorded, not the end of the sweep
        from circuits.errors import UsageError

        refused = isinstance(exc, UsageError) and "plant" not in row["seconds"]
        row.update(status="refused" if refused else "error", reason=str(exc))
        if not refused:
            row["traceback"] = traceback.format_exc()
    return row


def _play(row, spec, kind, seed, cache, data, blind, check_find, fresh) -> None:
    from circuits import load
    from circuits.compare import audit, diff
    from circuits.models import LoadedModel

    seconds = row["seconds"]
    with timed(seconds, "load"):
        reference = load(spec)
    row["classes"] = len(reference.info.get("classes", [])) or None
    module, key = planted(reference, spec, kind, seed, cache, seconds, fresh)
    row["planted"] = {"neurons": key["neurons"], "target_class": key.get("target_class"),
                      **{k: key[k] for k in ("donor", "pair", "edges", "trigger", "conjunction") if key.get(k)}}  # fmt: skip
    row["accuracy"] = key["accuracy"]
    if kind == "backdoor":
        row["success"] = {"before": key["trigger"]["success_before"], "after": key["trigger"]["success"]}
    if kind == "conjunction":
        row["success"] = {"before": key["conjunction"]["success_before"], "after": key["conjunction"]["success"]}
    tampered = LoadedModel(module, spec="tampered", input_shape=reference.input_shape)
    with timed(seconds, "diff"):
        result = diff(reference, tampered, data, motifs=False)
    report = find_report(result)
    if check_find:
        with timed(seconds, "find_check"):
            again = audit.find(tampered, reference, data)
        row["find_identical"] = (again["suspects"] == report["suspects"]
                                 and again["target_class"] == report["target_class"])  # fmt: skip
    with timed(seconds, "score"):
        row["diff"] = scored(audit.score(report, key, tampered), report["suspects"])
    with timed(seconds, "score_baseline"):
        row["baseline"] = scored(audit.score({"neurons": result["baseline"]}, key, tampered), result["baseline"])
    if blind:
        from circuits.compare.blind import find_blind

        with timed(seconds, "blind"):
            report = find_blind(tampered, data)
            row["blind"] = scored(audit.score(report, key, tampered), report.get("suspects", []))


def find_report(result: dict) -> dict:
    """The report :func:`circuits.compare.audit.find` makes from the same diff (``--check-find`` checks)."""
    outputs = [n for n in result["neurons"] if n["neuron"].rpartition(":")[0] == result["layers"][-1]]
    return {"suspects": [{"neuron": n["neuron"], "score": n["score"], "evidence": n["reasons"]}
                         for n in result["neurons"]],
            "target_class": int(outputs[0]["neuron"].rpartition(":")[2]) if outputs else None,
            "edges": result["edges"], "reference": result["model_a"], "model": result["model_b"],
            "data": result["data"]}  # fmt: skip


def scored(score: dict, ranked: list[dict]) -> dict:
    """A score as stored: its numbers, and the top suspects it was read from."""
    top = [{"neuron": r["neuron"], "score": r["score"], **({"evidence": r["evidence"]} if "evidence" in r else {})}
           for r in ranked[:TOP]]  # fmt: skip
    return {**score, "top": top}


def planted(reference, spec: str, kind: str, seed: int, cache: Path, seconds: dict, fresh: bool):
    """``(tampered module, key)`` from the cache, else from :func:`plant` (written to the cache); a refusal
    is cached too and raised again as the ``UsageError`` it was."""
    import copy

    import torch

    from circuits.compare.audit import plant
    from circuits.errors import UsageError
    from circuits.models import weights_hash

    stem = cache / spec.removeprefix("zoo:") / f"{kind}-seed{seed}-{reference.weights_hash[:16]}-{settings_hash()}"
    meta = stem.with_suffix(".json")
    if meta.exists() and not fresh:
        stored = json.loads(meta.read_text())
        if stored.get("refused"):
            seconds["plant_cached"] = True
            raise UsageError(stored["refused"])
        module = copy.deepcopy(reference.module)
        module.load_state_dict(torch.load(stem.with_suffix(".pt"), map_location="cpu", weights_only=True))
        module.eval()
        if weights_hash(module) == stored["key"]["weights_sha256"]:
            seconds["plant"], seconds["plant_cached"] = stored["seconds"], True
            return module, stored["key"]
    stem.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        module, key = plant(spec, kind, seed)
    except UsageError as exc:
        atomic_write(meta, json.dumps({"refused": str(exc), "seconds": time.perf_counter() - start}))
        seconds["plant_cached"] = False
        raise
    seconds["plant"], seconds["plant_cached"] = time.perf_counter() - start, False
    tmp = stem.with_suffix(".pt.tmp")
    torch.save(module.state_dict(), tmp)
    os.replace(tmp, stem.with_suffix(".pt"))
    atomic_write(meta, json.dumps({"key": key, "seconds": seconds["plant"]}, indent=1))
    return module, key


def settings_hash() -> str:
    """The plant settings a cached plant was made with: change one and the cache no longer applies."""
    from circuits.compare import audit

    names = ("STEPS", "LR_SCALE", "BACKDOOR", "POISON", "PATCH", "CONDITIONS", "DATA_SEED", "KINDS")
    settings = {name: getattr(audit, name, None) for name in names}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class timed:
    """``with timed(seconds, "diff"):`` stores the block's wall seconds under ``seconds["diff"]``."""

    def __init__(self, seconds: dict, name: str):
        self.seconds, self.name = seconds, name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self.name] = time.perf_counter() - self.start


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# -- the sweep --------------------------------------------------------------------------------------------


def sweep(args, rounds: list[tuple[str, str, int]], on_row) -> None:
    from tqdm import tqdm

    common = (args.model_seed, str(args.cache), args.data)
    rest = (args.check_find, args.fresh)
    bar = tqdm(total=len(rounds), unit="round", dynamic_ncols=True)
    if args.jobs == 1:
        for family, kind, seed in rounds:
            bar.set_postfix_str(f"{family} {kind} s{seed}")
            on_row(play(family, kind, seed, *common, args.blind and kind in args.blind_kinds, *rest))
            bar.update()
    else:
        with ProcessPoolExecutor(args.jobs, initializer=_worker_init, initargs=(1,)) as pool:
            futures = [pool.submit(play, family, kind, seed, *common, args.blind and kind in args.blind_kinds, *rest)
                       for family, kind, seed in rounds]  # fmt: skip
            for future in as_completed(futures):
                row = future.result()
                bar.set_postfix_str(f"{row['family']} {row['kind']} s{row['seed']}")
                on_row(row)
                bar.update()
    bar.close()


def order(row: dict) -> tuple:
    family = FAMILIES.index(row["family"]) if row["family"] in FAMILIES else len(FAMILIES)
    return (family, row["family"], KINDS.index(row["kind"]) if row["kind"] in KINDS else len(KINDS), row["seed"])


def provenance(args, wall: float, rows: int) -> dict:
    import torch

    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=HERE, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"command": "python3 benchmarks/audit_sweep.py " + shlex.join(sys.argv[1:]),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "wall_seconds": wall, "rounds": rows, "jobs": args.jobs,
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
                        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                        "python": platform.python_version()},
            "git": {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", ":/circuits"))},
            "plant_settings": settings_hash()}  # fmt: skip


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def blind_available() -> bool:
    try:
        from circuits.compare import blind
    except ImportError:
        return False
    return callable(getattr(blind, "find_blind", None))


# -- the Markdown -----------------------------------------------------------------------------------------


def share(values) -> str:
    values = [v for v in values if v is not None]
    return f"{sum(map(bool, values))}/{len(values)} ({sum(map(bool, values)) / len(values):.0%})" if values else "-"


def num(x, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def table(header: list[str], rows: list[list], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |",
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows), ""]  # fmt: skip


def markdown(results: dict) -> str:
    rows = sorted(results["rounds"], key=order)
    played = [r for r in rows if r["status"] == "played"]
    auditors = ["diff", "baseline"] + (["blind"] if any("blind" in r for r in played) else [])
    families = [f for f in FAMILIES if any(r["family"] == f for r in rows)]
    families += sorted({r["family"] for r in rows} - set(families))
    neuron_kinds = [k for k in KINDS if k not in CARRIERS and k != "fine-tune"
                    and any(r["kind"] == k for r in played)]  # fmt: skip
    runs = results.get("runs", [])
    out = ["# The auditing game over the zoo: the diff against the naive baseline", ""]
    out += _intro(rows, played, families, runs)
    out += _hits(played, neuron_kinds, families, auditors)
    out += _calibration(played, families)
    out += _carriers(played, families, auditors)
    out += _misses(played, neuron_kinds)
    out += _timing(played)
    out += _refused(rows)
    out += _how(runs, rows)
    return "\n".join(out).rstrip() + "\n"


def _intro(rows, played, families, runs) -> list[str]:
    refused = sum(r["status"] == "refused" for r in rows)
    errors = sum(r["status"] == "error" for r in rows)
    seeds = sorted({r["seed"] for r in rows})
    return [f"{len(rows)} rounds: {len(families)} zoo CNN families x {len({r['kind'] for r in rows})} plant kinds x "
            f"seeds {', '.join(map(str, seeds))}; {len(played)} played, {refused} refused by the plant"
            + (f", {errors} failed" if errors else "") + ". Seed *s* plants with seed *s* in the family's "
            "model `FAMILY-s`*s* (three trained networks per family, each with its own choice of neuron, class "
            "and fine-tune data). Every plant ends with the same clean fine-tune, so every weight has moved; "
            "the auditor with a reference (`circuits.compare.audit.find`, i.e. `circuits.compare.diff`) ranks "
            "the tampered model's neurons, and the naive baseline ranks them by the relative change of their "
            "input weights at the same index (no matching, no normalisation), measured in the same diff. "
            f"Probe images: `{played[0]['data'] if played else DATA}`.", ""]  # fmt: skip


def _hits(played, kinds, families, auditors) -> list[str]:
    out = ["## 1. Are the planted neurons in the top 3?", "",
           "Share of tampers whose planted neurons (any of them: a mirror swap plants two) rank in the auditor's "
           "top 3 (hit@3) and first (hit@1); kinds that plant neurons only.", ""]  # fmt: skip
    header = ["kind", "rounds"] + [f"{a} hit@3" for a in auditors] + [f"{a} hit@1" for a in auditors]
    header += ["diff median rank", "baseline median rank"]
    body = []
    for kind in kinds + ["all"]:
        here = [r for r in played if r["kind"] == kind or (kind == "all" and r["kind"] in kinds)]
        body.append([f"**{kind}**" if kind == "all" else kind, len(here),
                     *(share(r.get(a, {}).get("hit@3") for r in here) for a in auditors),
                     *(share(r.get(a, {}).get("hit@1") for r in here) for a in auditors),
                     median_rank(r["diff"]["rank"] for r in here), median_rank(r["baseline"]["rank"] for r in here)])  # fmt: skip
    out += table(header, body)
    out += ["Per family: hit@3 of the diff vs of the baseline, over the rounds played.", ""]
    body = []
    for family in families:
        cells = []
        for kind in kinds:
            here = [r for r in played if r["family"] == family and r["kind"] == kind]
            cells.append(f"{count(r['diff']['hit@3'] for r in here)}/{len(here)} vs "
                         f"{count(r['baseline']['hit@3'] for r in here)}/{len(here)}" if here else "refused")  # fmt: skip
        body.append([family, *cells])
    return out + table(["family", *kinds], body)


def count(values) -> int:
    return sum(bool(v) for v in values)


def median_rank(ranks) -> str:
    ranks = sorted(ranks, key=lambda r: float("inf") if r is None else r)
    if not ranks:
        return "-"
    middle = ranks[(len(ranks) - 1) // 2]
    return "not ranked" if middle is None else str(middle)


def _calibration(played, families) -> list[str]:
    kinds = [k for k in KINDS if k != "fine-tune" and any(r["kind"] == k for r in played)]
    out = ["## 2. Calibration: does the control score below every tamper?", "",
           "The diff's top score (the largest robust z of any neuron) for the control (`fine-tune`: the clean "
           "fine-tune alone, nothing planted) against the smallest top score among the family's tampers of each "
           "kind. A family is calibrated when its highest control sits below its lowest tamper of every kind: one "
           "threshold then tells tampered from merely fine-tuned.", ""]  # fmt: skip
    body, verdicts = [], {}
    for family in families:
        controls = [r["diff"]["top_score"] for r in played if r["family"] == family and r["kind"] == "fine-tune"]
        lows = {}
        for kind in kinds:
            scores = [r["diff"]["top_score"] for r in played if r["family"] == family and r["kind"] == kind]
            lows[kind] = min(scores) if scores else None
        top = max(controls) if controls else None
        tampers = [v for v in lows.values() if v is not None]
        below = None if top is None or not tampers else top < min(tampers)
        verdicts[family] = below
        cells = [num(lows[k]) if lows[k] is None or top is None or lows[k] > top else f"**{num(lows[k])}**"
                 for k in kinds]  # fmt: skip
        body.append([family, ", ".join(num(c) for c in controls) or "-", *cells,
                     "-" if below is None else ("yes" if below else "no")])  # fmt: skip
    out += table(["family", "control top scores", *(f"min {k}" for k in kinds), "control below all"], body)
    out.append("Bold: a tamper kind whose lowest top score does not clear the family's highest control.")
    out.append("")
    known = {f: v for f, v in verdicts.items() if v is not None}
    ok = [f for f, v in known.items() if v]
    out.append(f"**Verdict:** the control sits below every tamper in {len(ok)} of {len(known)} families"
               + ("." if len(ok) == len(known) else f" (not in: {', '.join(f for f in known if not known[f])}).")) # fmt: skip
    scores = [(r["diff"]["top_score"], r) for r in played if r["kind"] != "fine-tune"]
    control = [r["diff"]["top_score"] for r in played if r["kind"] == "fine-tune"]
    if scores and control:
        low, r = min(scores, key=lambda s: s[0])
        out.append(f"Across families: highest control {max(control):.1f}, lowest tamper {low:.1f} "
                   f"({r['family']} {r['kind']} seed {r['seed']}).")  # fmt: skip
    alarms = [r for r in played if r["kind"] == "fine-tune" and any(
        s[0] <= r["diff"]["top_score"] for s in scores if s[1]["family"] == r["family"])]  # fmt: skip
    if alarms:
        out += ["", "Controls that outscore a tamper of their family, with what the diff saw (nothing was planted):",
                ""]  # fmt: skip
        out += table(["family", "seed", "top suspect", "score", "evidence"],
                     [[r["family"], r["seed"], r["diff"]["top"][0]["neuron"], num(r["diff"]["top_score"]),
                       "; ".join(r["diff"]["top"][0].get("evidence", []))] for r in alarms], "lllrl")  # fmt: skip
        return out
    return out + [""]


def _carriers(played, families, auditors) -> list[str]:
    kinds = [k for k in CARRIERS if any(r["kind"] == k for r in played)]
    if not kinds:
        return []
    out = ["## 3. Backdoor and conjunction: the class and the carriers", "",
           "These plants name a class and a stimulus, no neuron. *Target class named*: the output neuron the diff "
           "ranks highest is the backdoor's (or conjunction's) target class (the baseline names no class). "
           "*1 / classes*: naming it by luck. *responding@3 >= 2*: at least 2 of the auditor's top 3 hidden suspects respond to the trigger (or to "
           "the conjunction, against each half alone) by 3 clean standard deviations. *chance*: the share of all "
           "hidden neurons that respond, and *luck*: the chance that 2 of 3 random neurons would "
           "(3c^2 - 2c^3, averaged over rounds). *success*: the share of held-out images the trigger (or the "
           "conjunction) sends to the target class, before -> after the plant.", ""]  # fmt: skip
    namers = [a for a in auditors if a != "baseline"]
    header = ["kind", "family", "rounds", *(f"{a} names the class" for a in namers), "1 / classes",
              *(f"{a} responding@3 >= 2" for a in auditors), "diff mean responding@3", "chance", "luck", "success",
              "accuracy"]  # fmt: skip
    body = []
    for kind in kinds:
        for family in [*families, "all"]:
            here = [r for r in played if r["kind"] == kind and (family == "all" or r["family"] == family)]
            if not here:
                continue
            chance = [r["diff"].get("chance") for r in here]
            luck = [None if c is None else 3 * c**2 - 2 * c**3 for c in chance]
            body.append([kind, f"**{family}**" if family == "all" else family, len(here),
                         *(share(r.get(a, {}).get("target_class_named") for r in here) for a in namers),
                         num(mean(1 / r["classes"] if r.get("classes") else None for r in here), 2),
                         *(share(None if r.get(a, {}).get("responding@3") is None else r[a]["responding@3"] >= 2
                                 for r in here) for a in auditors),
                         num(mean(r["diff"].get("responding@3") for r in here), 2), num(mean(chance), 2),
                         num(mean(luck), 2),
                         f"{num(mean(r['success']['before'] for r in here), 2)} -> "
                         f"{num(mean(r['success']['after'] for r in here), 2)}",
                         f"{num(mean(r['accuracy']['original'] for r in here), 3)} -> "
                         f"{num(mean(r['accuracy']['tampered'] for r in here), 3)}"])  # fmt: skip
    return out + table(header, body, "ll" + "r" * (len(header) - 2))


def _misses(played, kinds) -> list[str]:
    missed = [r for r in played if r["kind"] in kinds and r["diff"]["hit@3"] is False]
    out = ["## Rounds the diff missed (planted neurons not in its top 3)", ""]
    if not missed:
        return out + ["None.", ""]
    body = []
    for r in missed:
        top = ", ".join(f"{s['neuron']} ({s['score']:.1f})" for s in r["diff"]["top"][:3])
        donor = r["planted"].get("donor") or ""
        body.append([r["family"], r["kind"], r["seed"], ", ".join(r["planted"]["neurons"]), donor,
                     r["diff"]["rank"] or "not ranked", r["baseline"]["rank"] or "not ranked", top,
                     "; ".join(r["diff"]["top"][0].get("evidence", [])) if r["diff"]["top"] else ""])  # fmt: skip
    return out + table(["family", "kind", "seed", "planted", "donor", "diff rank", "baseline rank", "diff's top 3",
                        "the top suspect's evidence"], body, "lllllllll")  # fmt: skip


def _timing(played) -> list[str]:
    steps = ["load", "plant", "diff", "score", "score_baseline", "blind", "find_check"]
    steps = [s for s in steps if any(s in r["seconds"] for r in played)]
    body = []
    for kind in KINDS:
        here = [r for r in played if r["kind"] == kind]
        if here:
            body.append([kind, len(here), *(num(mean(r["seconds"].get(s) for r in here)) for s in steps)])
    fresh = [r for r in played if not r["seconds"].get("plant_cached")]
    note = (f"Plant seconds are those of the run that planted (cached in this run for "
            f"{len(played) - len(fresh)} of {len(played)} rounds). ")  # fmt: skip
    return ["## Seconds per step (mean wall seconds per round)", "",
            note + "`score` for backdoor and conjunction includes measuring every hidden neuron's response to the "
            "stimulus.", "", *table(["kind", "rounds", *steps], body)]  # fmt: skip


def _refused(rows) -> list[str]:
    out = ["## 4. Refused rounds", ""]
    refused = [r for r in rows if r["status"] == "refused"]
    if not refused:
        out += ["None.", ""]
    else:
        out += table(["family", "kind", "seed", "reason"],
                     [[r["family"], r["kind"], r["seed"], r["reason"]] for r in refused], "llll")  # fmt: skip
    errors = [r for r in rows if r["status"] == "error"]
    if errors:
        out += ["Rounds that failed (a bug, not a refusal):", ""]
        out += table(["family", "kind", "seed", "error"],
                     [[r["family"], r["kind"], r["seed"], r["reason"]] for r in errors], "llll")  # fmt: skip
    return out


def _how(runs, rows) -> list[str]:
    out = ["## How these numbers were produced", ""]
    for run in runs:
        m = run["machine"]
        out.append(f"- `{run['command']}` on {run['date'][:10]} ({run['rounds']} rounds, "
                   f"{run['wall_seconds'] / 60:.0f} min wall, {run['jobs']} job(s)); machine: {m['cpu']}, "
                   f"{m['usable_cores']} CPU cores (shared with other work), torch {m['torch']} "
                   f"({m['torch_threads']} threads), Python {m['python']}; git {str(run['git']['commit'])[:10]}"
                   f"{' with uncommitted changes to circuits/' if run['git']['dirty'] else ''}; plant settings "
                   f"{run['plant_settings']}.")  # fmt: skip
    checked = [r for r in rows if "find_identical" in r]
    if checked:
        out += ["", f"The diff is computed once per round and turned into `find`'s report as `find` does; "
                f"`--check-find` also called `find` on {len(checked)} rounds and got the identical ranking and "
                f"target class on {sum(r['find_identical'] for r in checked)} of them."]  # fmt: skip
    out += ["", "Regenerate this file from `benchmarks/results/audit_sweep.json` with `python3 "
            "benchmarks/audit_sweep.py --report-only`; rerun a subset with `--families`, `--kinds`, `--seeds` and "
            "`--merge` (tampered weights and keys are cached under `~/.cache/circuits/audit_sweep/`).", ""]  # fmt: skip
    return out


# -- the command line -------------------------------------------------------------------------------------


def summary(results: dict) -> str:
    rows = results["rounds"]
    played = [r for r in rows if r["status"] == "played"]
    neuron = [r for r in played if r["planted"]["neurons"]]
    carriers = [r for r in played if r["kind"] in CARRIERS]
    parts = [f"{len(rows)} rounds ({len(played)} played, {sum(r['status'] == 'refused' for r in rows)} refused, "
             f"{sum(r['status'] == 'error' for r in rows)} failed)",
             f"hit@3 diff {count(r['diff']['hit@3'] for r in neuron)}/{len(neuron)} vs baseline "
             f"{count(r['baseline']['hit@3'] for r in neuron)}/{len(neuron)}"]  # fmt: skip
    controls = [r["diff"]["top_score"] for r in played if r["kind"] == "fine-tune"]
    tampers = [r["diff"]["top_score"] for r in played if r["kind"] != "fine-tune"]
    if controls and tampers:
        parts.append(f"top score: control max {max(controls):.1f} vs tamper min {min(tampers):.1f}")
    if carriers:
        parts.append(f"backdoor/conjunction class named {count(r['diff'].get('target_class_named') for r in carriers)}"
                     f"/{len(carriers)}, responding@3>=2 "
                     f"{count((r['diff'].get('responding@3') or 0) >= 2 for r in carriers)}/{len(carriers)}")  # fmt: skip
    return "; ".join(parts)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    listed = lambda text: [t.strip() for t in text.split(",") if t.strip()]  # noqa: E731
    parser.add_argument("--families", type=listed, default=list(FAMILIES), help="comma-separated zoo families")
    parser.add_argument("--kinds", type=listed, default=list(KINDS), help="comma-separated plant kinds")
    parser.add_argument("--seeds", type=lambda t: [int(s) for s in listed(t)], default=[0, 1, 2])
    parser.add_argument("--model-seed", type=int, default=None,
                        help="plant every round in FAMILY-sN (default: seed s plants in FAMILY-s{s})")
    parser.add_argument("--data", default=DATA, help=f"the auditor's probe images (default {DATA})")
    parser.add_argument("--out", type=Path, default=DEFAULT_MD, help="the Markdown report")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the JSON results")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where tampered weights and keys go")
    parser.add_argument("--jobs", type=int, default=1, help="rounds run at once, in worker processes")
    parser.add_argument("--blind", action=argparse.BooleanOptionalAction, default=None,
                        help="also score circuits.compare.blind.find_blind (default: when it exists)")
    parser.add_argument("--blind-kinds", type=listed, default=list(KINDS),
                        help="the kinds the blind auditor plays (default: all; it takes minutes a round)")
    parser.add_argument("--check-find", action="store_true", help="also call audit.find and check it agrees")
    parser.add_argument("--fresh", action="store_true", help="plant again, ignoring cached plants")
    parser.add_argument("--merge", action="store_true", help="keep the JSON's other rounds, replace these")
    parser.add_argument("--report-only", action="store_true", help="rewrite --out from --json; run nothing")
    args = parser.parse_args(argv)
    unknown = [f for f in args.families if f not in FAMILIES] + [k for k in args.kinds + args.blind_kinds
                                                                   if k not in KINDS]  # fmt: skip
    if unknown:
        parser.error(f"unknown family or kind: {', '.join(unknown)} (families: {', '.join(FAMILIES)}; kinds: "
                     f"{', '.join(KINDS)})")  # fmt: skip
    if args.jobs < 1:
        parser.error("--jobs is at least 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report_only:
        results = json.loads(args.json.read_text())
        args.out.write_text(markdown(results))
        print(summary(results))
        return
    if args.blind is None:
        args.blind = blind_available()
    elif args.blind and not blind_available():
        sys.exit("--blind: circuits.compare.blind.find_blind is not importable")
    rounds = [(f, k, s) for f in args.families for k in args.kinds for s in args.seeds]
    old = json.loads(args.json.read_text()) if args.merge and args.json.exists() else {"rounds": [], "runs": []}
    rows, start = [], time.perf_counter()

    def write(final: bool) -> dict:
        done = {(r["family"], r["kind"], r["seed"]) for r in rows}
        kept = [r for r in old["rounds"] if (r["family"], r["kind"], r["seed"]) not in done]  # --merge: the rest
        run = provenance(args, time.perf_counter() - start, len(rows))
        results = {"schema_version": SCHEMA_VERSION, "description": __doc__.splitlines()[0],
                   "runs": [*old.get("runs", []), run], "rounds": sorted(kept + rows, key=order)}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.json, json.dumps(results, indent=1, sort_keys=False) + "\n")
        if final:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(markdown(results))
        return results

    def on_row(row):
        rows.append(row)
        write(final=False)  # a long sweep leaves its rounds so far behind if it is stopped

    sweep(args, rounds, on_row)
    results = write(final=True)
    print(f"{summary(results)}; {(time.perf_counter() - start) / 60:.1f} min; {args.out}, {args.json}")


if __name__ == "__main__":
    main()
