"""The size/faithfulness curve of whole-model programs (`circuits compile`), and a MobileNet-size compile.

For each zoo family (seed 0) and each K below its largest fan-in, the program keeping each neuron's top-K
inputs (ranked by how much their contribution varies on the probe images, dropped ones replaced by their
mean there) is compiled and measured on 2,000 held-out images of the family's task: lines of code, terms
(kept inputs), agreement with the model's class, task accuracy, logits R², and the time the program takes
next to the model's own forward on the same images (a ratio measured in the same run). "all" is the
complete, exact program. Then the benchmark MobileNetV2 (benchmarks/mobilenetv2.py, 224 x 224, random
weights) is compiled complete: compile time, lines, terms, and its largest logit error on 4 images.

    python benchmarks/program_curve.py                    # everything; rewrites RESULTS_program.md
    python benchmarks/program_curve.py --families plain-cnn-sparse --ks 4,8 --no-mobilenet   # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
FAMILIES = ["plain-cnn-sparse", "plain-cnn", "facing-cnn", "curve-cnn", "inception-cnn", "resnet-cnn", "mlp"]
KS = [1, 2, 4, 8, 16, 32, 64, 128, 0]  # 0: complete; a K at or above a family's largest fan-in is skipped


def measure_family(family: str, ks: list[int], images: int) -> list[dict]:
    import circuits
    from circuits.data import model_data
    from circuits.graph import build_graph
    from circuits.program import compile_program, held_out, probe
    from circuits.program.package import import_package
    from circuits.program.verify import load_verify_data, verify_program

    loaded = circuits.load(f"zoo:{family}-s0")
    graph = build_graph(loaded)
    probe_spec = probe(loaded, None)
    test_spec = held_out(loaded, None).rsplit(":", 2)[0] + f":{images}:10000"
    probe_images = model_data(probe_spec, loaded)
    test = load_verify_data(test_spec, loaded)
    fan_in = max(n["live"] for layer in compile_program(graph).manifest["layers"] for n in layer["neurons"])
    rows = []
    for k in [k for k in ks if k < fan_in]:
        started = time.perf_counter()
        program = compile_program(graph, top_k=k or None, data=probe_images, data_spec=probe_spec)
        compile_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as folder:
            program.write(folder)
            report = verify_program(folder, graph, test)
            package = import_package(folder)
            x = test.images.double().numpy()
            started = time.perf_counter()
            package.logits(x)
            program_s = time.perf_counter() - started
        started = time.perf_counter()
        with torch.no_grad():
            loaded.module.eval()(test.images)
        model_s = time.perf_counter() - started
        rows.append({"family": family, "k": k or "all", "lines": program.lines, "terms": program.terms,
                     "agreement": report["agreement"], "accuracy": report["accuracy"],
                     "model_accuracy": report["model_accuracy"], "logits_r2": report["logits_r2"],
                     "compile_s": round(compile_s, 2), "program_s": round(program_s, 3), "model_s": round(model_s, 4),
                     "time_ratio": round(program_s / model_s, 1)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def measure_mobilenet() -> dict:
    from mobilenetv2 import MobileNetV2

    from circuits.graph import build_graph
    from circuits.program import compile_program
    from circuits.program.package import import_package

    graph = build_graph(MobileNetV2(), (3, 224, 224))
    started = time.perf_counter()
    program = compile_program(graph)
    compile_s = time.perf_counter() - started
    x = torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as folder:
        program.write(folder)
        started = time.perf_counter()
        package = import_package(folder)
        import_s = time.perf_counter() - started
        started = time.perf_counter()
        emitted = package.logits(x.double().numpy())
        program_s = time.perf_counter() - started
    started = time.perf_counter()
    real = graph.run(x, [package.LOGITS])[package.LOGITS].double().numpy()
    model_s = time.perf_counter() - started
    row = {"compile_s": round(compile_s, 1), "lines": program.lines, "terms": program.terms,
           "neurons": program.manifest["neurons"], "import_s": round(import_s, 1), "program_s": round(program_s, 1),
           "model_s": round(model_s, 2), "max_logit_error": float(np.abs(emitted - real).max()),
           "logit_scale": float(np.abs(real).max()), "agreement": float((emitted.argmax(1) == real.argmax(1)).mean())}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def report(rows: list[dict], mobilenet: dict | None, args) -> str:
    lines = ["# Whole-model programs: size against faithfulness", "",
             "Generated by `benchmarks/program_curve.py`; do not edit by hand (rerun it instead).", "",
             f"- **Date:** {datetime.now(UTC).isoformat(timespec='seconds')}",
             f"- **Machine:** {platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}",
             "- **Programs:** `compile_program(model, top_k=K, data=<256 probe images of the task, seed 12345>)`: "
             "each neuron keeps its K inputs whose contribution varies most on the probe images, the rest "
             "replaced by their mean contribution there; `all` keeps every input (exact).",
             f"- **Measured on** {args.images:,} held-out images of each family's task (seed 10000, the zoo "
             "cards' evaluation set); time ratio = program `logits()` (numpy, float64) / the model's forward "
             "(torch, float32) on the same images.", "",
             "| family | K | lines | terms | agreement | accuracy (model) | logits R² | program / forward |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['family']} | {r['k']} | {r['lines']:,} | {r['terms']:,} | {r['agreement']:.2%} | "
                     f"{r['accuracy']:.2%} ({r['model_accuracy']:.2%}) | {r['logits_r2']:.3f} | {r['time_ratio']}x |")  # fmt: skip
    lines += ["", "Smallest K that keeps ≥ 95% agreement, per family:", ""]
    for family in dict.fromkeys(r["family"] for r in rows):
        hits = [r["k"] for r in rows if r["family"] == family and r["agreement"] >= 0.95 and r["k"] != "all"]
        lines.append(f"- {family}: {min(hits) if hits else 'none of those tried (only the complete program)'}")
    if mobilenet:
        m = mobilenet
        lines += ["", "## A MobileNet-size network, complete", "",
                  f"benchmarks/mobilenetv2.py (MobileNetV2 1.0 layout, 3.5 M parameters, 224 x 224, random weights): "
                  f"{m['neurons']:,} neurons compiled in {m['compile_s']} s into {m['lines']:,} lines and "
                  f"{m['terms']:,} terms; the package imports in {m['import_s']} s; on 4 images its logits are "
                  f"within {m['max_logit_error']:.2g} of the model's (largest logit {m['logit_scale']:.2g}), "
                  f"agreement {m['agreement']:.0%}; it takes {m['program_s']} s where the model takes {m['model_s']} s."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="comma-separated K; 0 = complete")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--no-mobilenet", action="store_true")
    parser.add_argument("--out", default=str(HERE / "RESULTS_program.md"))
    parser.add_argument("--json", default=str(HERE / "results" / "program_curve.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    ks = [int(k) for k in args.ks.split(",")]
    rows = [row for family in args.families.split(",") for row in measure_family(family, ks, args.images)]
    mobilenet = None if args.no_mobilenet else measure_mobilenet()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"rows": rows, "mobilenet": mobilenet}, indent=1) + "\n")
    Path(args.out).write_text(report(rows, mobilenet, args))
    print(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    main()
