"""`circuits audit plant | find | score`: the auditing game with a reference model."""

import json

import click

from circuits.cli._common import check_writable, echo_json, load_model


@click.group()
def audit():
    """The auditing game: one side plants a change in a model, the other finds it.

    \b
    A round, with the zoo model as the reference:
      circuits audit plant zoo:plain-cnn-s0 --kind graft --seed 1 -o tampered.pt --key key.json
      circuits audit find zoo:plain-cnn-s0 --weights tampered.pt --reference zoo:plain-cnn-s0 --json > report.json
      circuits audit score report.json --key key.json
    """


@audit.command()
@click.argument("model", metavar="MODEL")
@click.option("--kind", required=True, metavar="KIND", help="fine-tune (the control), graft, flip-edge, "
              "union-case, mirror-swap, backdoor or conjunction (docs/compare.md).")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=int, help="Which neuron, class and fine-tune data.")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="The tampered state_dict (.pt).")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False), help="Where the secret key goes (.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON too.")
def plant(model, kind, seed, out, key_path, as_json):
    """Plant a change of KIND in a copy of the zoo MODEL, fine-tune every weight on clean images, and
    write the tampered weights and the key that says what was done.

    \b
    Example:
      circuits audit plant zoo:plain-cnn-s0 --kind graft --seed 1 -o tampered.pt --key key.json
    """
    import torch

    from circuits.compare.audit import plant as run
    from circuits.limits import check_seed

    check_writable(out, "-o", (".pt",))
    check_writable(key_path, "--key", (".json",))
    module, key = run(model, kind, check_seed(seed))
    torch.save(module.state_dict(), out)
    with open(key_path, "w") as f:
        json.dump(key, f, indent=2)
    if as_json:
        echo_json(key, {"model": model, "kind": kind, "seed": seed, "out": out, "key": key_path}, key["weights_sha256"])
        return
    click.echo(f"planted {kind} (seed {seed}) in {model}: weights in {out}, key in {key_path}; accuracy "
               f"{key['accuracy']['original']:.3f} -> {key['accuracy']['tampered']:.3f}")  # fmt: skip


@audit.command()
@click.argument("model", metavar="MODEL")
@click.option("--weights", type=click.Path(dir_okay=False), help="The tampered state_dict (weights_only=True).")
@click.option("--reference", required=True, metavar="MODEL", help="The model before the change (required: "
              "auditing without a reference is not built yet).")  # fmt: skip
@click.option("--data", metavar="SPEC", help="Probe images [default: toyworld:256:12345 for zoo models].")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1), help="Suspects shown.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (what `audit score` reads).")
def find(model, weights, reference, data, top, as_json):
    """Rank the neurons of MODEL (with --weights) most likely to hold a planted change, by diffing it
    against --reference.

    \b
    Example:
      circuits audit find zoo:plain-cnn-s0 --weights tampered.pt --reference zoo:plain-cnn-s0 --json > report.json
    """
    from circuits.compare.audit import find as run
    from circuits.compile.faithfulness import probe_spec
    from circuits.data import model_data

    tampered = load_model(model, weights, None)
    ref = load_model(reference, None, None)
    spec = probe_spec(ref, data)
    report = run(tampered, ref, model_data(spec, ref))
    report["data"] = spec
    if as_json:
        echo_json(report, {"model": model, "weights": weights, "reference": reference, "data": spec},
                  tampered.weights_hash)  # fmt: skip
        return
    for k, s in enumerate(report["suspects"][:top]):
        click.echo(f"{k + 1:>3}  {s['neuron']:<12} {s['score']:8.1f}  {'; '.join(s['evidence']) or '-'}")


@audit.command()
@click.argument("report_path", metavar="REPORT.json", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False), help="The plant's key.")
@click.option("--json", "as_json", is_flag=True, help="Print the score as JSON.")
def score(report_path, key_path, as_json):
    """Did REPORT (from `audit find --json`, or `diff --json`) name the planted neurons? hit@1, hit@3.

    \b
    Example:
      circuits audit score report.json --key key.json --json
    """
    from circuits.compare.audit import score as run
    from circuits.errors import UsageError

    loaded = []
    for path, what in ((report_path, "REPORT"), (key_path, "--key")):
        try:
            with open(path) as f:
                loaded.append(json.load(f))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{what} {path} is not a JSON file: {type(exc).__name__}") from None
        if not isinstance(loaded[-1], dict):
            raise UsageError(f"{what} {path} holds no JSON object")
    result = run(*loaded)
    if as_json:
        echo_json(result, {"report": report_path, "key": key_path})
        return
    click.echo(f"{result['kind']}: planted neuron at rank {result['rank']}, hit@1 {result['hit@1']}, "
               f"hit@3 {result['hit@3']}, top suspect score {result['top_score']}")  # fmt: skip
