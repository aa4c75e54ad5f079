"""`circuits verify`: measure how faithful an emitted module is to the model it came from."""

import click

from circuits.cli._common import device_option, echo_json, normalize_option

# circuits.compile.faithfulness.DEFAULT_DATA, spelled out so --help needs no torch (a test keeps them equal)
DATA_OPTION_HELP = ("Held-out probe images [default: toyworld:256:12345 for zoo and planted models; any other "
                    "model needs its own, or toyworld:N to measure it on toy images anyway].")  # fmt: skip


@click.command()
@click.argument("module_path", metavar="OUT.py|DIR", type=click.Path())
@click.option("--model", "model", required=True, metavar="MODEL", help="The model the module was emitted from.")
@click.option("--weights", type=click.Path(dir_okay=False), help="state_dict file (loaded with weights_only=True).")
@click.option("--input-shape", metavar="C,H,W", help="Example input shape, if the model does not say.")
@click.option("--data", metavar="SPEC", help=DATA_OPTION_HELP)
@click.option("--record/--no-record", default=True, show_default=True,
              help="Write the numbers into the module's FAITHFULNESS block.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@normalize_option
@device_option
def verify(module_path, model, weights, input_shape, data, record, as_json, normalize, device):
    """Measure emitted code against MODEL: a circuit module (OUT.py) or a whole program (DIR).

    A circuit module runs on MODEL's real leaf activations; every neuron gets R², Pearson r and
    top-image agreement (top 10 images by peak activation); when the circuit reaches the input, the
    target's numbers are end to end. A program (`circuits compile`) runs on the images alone: task
    accuracy, agreement with the model's class, R² of the logits and of every layer (end to end and on
    the model's own inputs) and neuron, and the largest error; --record writes them into DIR
    (FAITHFULNESS.json, PROGRAM.md).

    \b
    Examples:
      circuits extract zoo:plain-cnn --neuron conv3:0 --emit conv3_0.py
      circuits verify conv3_0.py --model zoo:plain-cnn --data toyworld:512:7 --json
      circuits compile zoo:plain-cnn-sparse -o sparse8 --top-k 8 --no-verify
      circuits verify sparse8 --model zoo:plain-cnn-sparse
    """
    import os

    from circuits.cli._common import load_model
    from circuits.compile import record_faithfulness as record_numbers
    from circuits.compile import verify as run_verify
    from circuits.compile.faithfulness import probe_spec
    from circuits.data import model_data

    if os.path.isdir(module_path):
        return _verify_program(module_path, model, weights, input_shape, data, record, as_json, normalize, device)
    loaded = load_model(model, weights, input_shape)
    data = probe_spec(loaded, data)  # a model from outside the toy world must be given its own images
    report = run_verify(module_path, loaded, model_data(data, loaded, normalize), device=device)
    if record:
        record_numbers(module_path, report, data)
    arguments = {"module": module_path, "model": model, "weights": weights, "data": data, "normalize": normalize}
    if as_json:
        echo_json({"model": loaded.spec, **report}, arguments, loaded.weights_hash)
        return
    from circuits.formatting import faithfulness_summary

    click.echo(faithfulness_summary(report))


def _verify_program(folder, model, weights, input_shape, data, record, as_json, normalize, device):
    from circuits.cli._common import load_model
    from circuits.program import require_held_out
    from circuits.program.verify import load_verify_data, record_faithfulness, verify_program

    loaded = load_model(model, weights, input_shape)
    spec = require_held_out(loaded, data)
    report = {**verify_program(folder, loaded, load_verify_data(spec, loaded, normalize), device=device), "data": spec}
    if record:
        record_faithfulness(folder, report, spec)
    arguments = {"program": folder, "model": model, "weights": weights, "data": spec, "normalize": normalize}
    if as_json:
        echo_json({"model": loaded.spec, **report}, arguments, loaded.weights_hash)
        return
    from circuits.formatting import program_report

    click.echo(program_report(report))
