"""`circuits compile`: a whole network as a Python package, from the image to the logits, measured."""

import click

from circuits.cli._common import device_option, echo_json, model_options, normalize_option

# circuits.program.HELD_OUT and PROBE, spelled out so --help needs no torch (a test keeps them equal)
VERIFY_HELP = ("Held-out images the program is measured on [default: 2,000 of the model's own toy-world task, "
               "TASK:2000:10000, for zoo and planted models; any other model is measured only when given them].")  # fmt: skip
PROBE_HELP = ("Probe images the dropped inputs' mean is taken on [default: toyworld:TASK:256:12345 for zoo and "
              "planted models].")  # fmt: skip


@click.command(name="compile")
@model_options
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder to write the package to (new, empty, or an earlier program, which is replaced whole).")  # fmt: skip
@click.option("--top-k", type=int, metavar="K", help="Each neuron keeps its K strongest inputs [default: all: exact].")
@click.option("--keep-strength", type=float, metavar="F",
              help="Each neuron keeps its fewest strongest inputs that carry share F of its input strength.")  # fmt: skip
@click.option("--rank", type=click.Choice(["data", "weight"]),
              help="Which inputs --top-k keeps: those whose contribution varies most on --data [default], or the "
                   "strongest by weight.")  # fmt: skip
@click.option("--dropped", type=click.Choice(["mean", "zero"]),
              help="What stands in for a dropped input: its mean contribution on --data [default], or zero.")  # fmt: skip
@click.option("--data", metavar="SPEC", help=PROBE_HELP)
@click.option("--motifs", "motifs", metavar="FILE.json|find",
              help="Motif roles for the docstrings and PROGRAM.md: a `circuits motifs --json` file, or 'find' to "
                   "find them on MODEL from its weights.")  # fmt: skip
@click.option("--simplify", is_flag=True,
              help="Write each equivariant family as one function and each union's cases through one shared kernel, "
                   "wherever the motifs (--motifs, else found on MODEL) suggest it and every neuron it changes keeps "
                   "its R² on --data within --tolerance.")  # fmt: skip
@click.option("--tolerance", type=float, metavar="T",
              help="With --simplify: the R² a collapse may cost any neuron it changes [default: 0.01].")  # fmt: skip
@click.option("--verify-data", metavar="SPEC", help=VERIFY_HELP)
@click.option("--verify/--no-verify", "measure", default=True, show_default=True,
              help="Measure the program against the model and write the numbers into it.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@normalize_option
@device_option
def compile_command(model, weights, input_shape, out, top_k, keep_strength, rank, dropped, data, motifs, simplify,
                    tolerance, verify_data, measure, as_json, normalize, device):  # fmt: skip
    """Reverse-compile MODEL into an importable package in DIR: one module per layer, one function per
    neuron (named by its label where it has one), kernels in content-hashed .npz files, predict(images)
    and logits(images) from raw images, and PROGRAM.md listing every neuron with its inputs, label and R².

    Without --top-k or --keep-strength the program keeps every input and computes the model exactly.
    With them, each neuron's dropped inputs are replaced by their mean contribution on --data (or by zero,
    --dropped zero), and the measured agreement says what the shorter program costs. --simplify writes the
    motifs it finds as forms (a family as one function, a union's cases through one kernel), each kept only
    when measured faithful on --data.

    \b
    Examples:
      circuits compile zoo:plain-cnn -o plain_cnn                 # exact; then: python -c "import plain_cnn"
      circuits compile zoo:plain-cnn-sparse -o sparse8 --top-k 8 --json
      circuits compile planted:union -o union_program --simplify  # families and unions as forms
      circuits verify sparse8 --model zoo:plain-cnn-sparse --data toyworld:2000:1
    """
    from circuits.cli._common import load_model
    from circuits.data import model_data
    from circuits.errors import UsageError
    from circuits.graph import build_graph
    from circuits.program import compile_program, held_out, probe
    from circuits.program.package import check_folder
    from circuits.program.prune import check_pruning
    from circuits.program.verify import load_verify_data
    from circuits.progress import progress_bar

    check_pruning(top_k, keep_strength)
    if tolerance is not None:
        from circuits.program.simplify import check_tolerance

        check_tolerance(tolerance)
    pruned = top_k is not None or keep_strength is not None
    if rank is not None and top_k is None:
        raise UsageError("--rank says which inputs --top-k keeps: pass --top-k K too (--keep-strength ranks by weight)")
    if dropped is not None and not pruned:
        raise UsageError("--dropped says what stands in for dropped inputs: pass --top-k or --keep-strength too")
    if tolerance is not None and not simplify:
        raise UsageError("--tolerance says what --simplify may cost: pass --simplify too")
    if verify_data is not None and not measure:
        raise UsageError("--verify-data and --no-verify contradict each other: drop one")
    check_folder(out)  # before any work: a folder of other files is never replaced
    found = _motifs(motifs)
    loaded = load_model(model, weights, input_shape)
    needs_data = simplify or (pruned and (dropped != "zero" or (top_k is not None and rank != "weight")))
    probe_name = probe(loaded, data) if needs_data else None
    verify_name = held_out(loaded, verify_data) if measure else None
    held = load_verify_data(verify_name, loaded, normalize) if verify_name else None  # a bad spec fails here, early
    graph = build_graph(loaded)
    images = model_data(probe_name, loaded, normalize) if probe_name else None
    with progress_bar(desc="compiling", total=sum(layer.kind not in ("input", "concat") for layer in graph.layers.values()),
                      unit="layer") as bar:  # fmt: skip
        program = compile_program(graph, top_k=top_k, keep_strength=keep_strength, data=images, data_spec=probe_name,
                                  dropped=dropped, rank=rank, motifs=found, simplify=simplify, tolerance=tolerance,
                                  progress=bar.update)  # fmt: skip
    program.write(out)
    report = _measure(out, graph, held, verify_name, device) if verify_name else None
    arguments = {"model": model, "weights": weights, "input_shape": input_shape, "out": out, "top_k": top_k,
                 "keep_strength": keep_strength, "rank": program.manifest["rank"], "dropped": program.manifest["dropped"], "data": probe_name,
                 "verify_data": verify_name, "motifs": motifs, "simplify": simplify, "tolerance": tolerance, **({"normalize": normalize} if normalize else {})}  # fmt: skip
    summary = {key: program.manifest[key] for key in ("model", "top_k", "keep_strength", "rank", "dropped", "lines",
                                                      "terms", "numbers", "neurons", "simplifications")}  # fmt: skip
    summary["layers"] = len(program.manifest["layers"])
    if as_json:
        echo_json({**summary, "out": out, "faithfulness": report}, arguments, loaded.weights_hash)
        return
    from circuits.formatting import program_summary

    click.echo(program_summary(out, program.manifest, report))


def _motifs(value):
    """--motifs: None, 'find', or the motifs of a `circuits motifs --json` file (read as data)."""
    if value is None or value == "find":
        return value
    import json

    from circuits.errors import UsageError

    try:
        payload = json.loads(open(value, encoding="utf-8").read())
    except OSError as e:
        raise UsageError(f"--motifs {value}: cannot read it ({e.strerror}); give a `circuits motifs --json` file or 'find'") from None
    except ValueError:
        raise UsageError(f"--motifs {value}: not JSON; give the output of `circuits motifs MODEL --json`") from None
    found = payload.get("motifs") if isinstance(payload, dict) else payload
    if not isinstance(found, list):
        raise UsageError(f"--motifs {value}: holds no list of motifs; give the output of `circuits motifs MODEL --json`")
    return found


def _measure(out, graph, data, data_spec, device):
    from circuits.program.verify import record_faithfulness, verify_program

    report = verify_program(out, graph, data, device=device)
    record_faithfulness(out, report, data_spec)
    return {**report, "data": data_spec}
