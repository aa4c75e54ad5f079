"""`circuits audit plant | find | score`: the auditing game, with a reference model or without one."""

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
@click.option("--reference", metavar="MODEL", help="The model before the change: the audit diffs against it. "
              "Without it the audit is blind: neurons whose input weights copy another's come first, then it "
              "synthesises a patch trigger per class, names the class whose patch pushes other images furthest "
              "into it (the mean logit margin; classes whose patch works anywhere are natural features, set aside) "
              "and ranks the neurons that carry its patch (those the output reads first).")  # fmt: skip
@click.option("--data", metavar="SPEC", help="Probe images [default: toyworld:256:12345 for zoo models].")
@click.option("--triggers", is_flag=True, help="With --reference: also synthesise a patch trigger per class in both "
              "models and name the class whose patch gained most (a backdoor's target; minutes).")  # fmt: skip
@click.option("--patch", type=click.IntRange(min=1), help="Trigger synthesis: the patch's side in pixels "
              "[default: an eighth of the image side].")  # fmt: skip
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1), help="Suspects shown.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (what `audit score` reads).")
def find(model, weights, reference, data, triggers, patch, top, as_json):
    """Rank the neurons of MODEL (with --weights) most likely to hold a planted change: by diffing it
    against --reference, or blind (no reference: copied neurons, then trigger synthesis, tens of seconds
    per class on 2 cores for a zoo model).

    \b
    Examples:
      circuits audit find zoo:plain-cnn-s0 --weights tampered.pt --reference zoo:plain-cnn-s0 --json > report.json
      circuits audit find zoo:plain-cnn-s0 --weights tampered.pt --json > blind.json
      circuits audit find zoo:plain-cnn-s0 --weights tampered.pt --reference zoo:plain-cnn-s0 --triggers
    """
    from circuits.compare.audit import find as run
    from circuits.compare.blind import find_blind
    from circuits.compile.faithfulness import probe_spec
    from circuits.data import model_data
    from circuits.errors import UsageError
    from circuits.progress import progress_bar

    tampered = load_model(model, weights, None)
    if triggers and reference is None:
        raise UsageError("--triggers compares the synthesised triggers with --reference's: give --reference (without "
                         "it the audit synthesises triggers anyway)")  # fmt: skip
    if reference is not None and patch is not None and not triggers:
        raise UsageError("--patch sizes the synthesised trigger: add --triggers, or leave --patch out with --reference")
    ref = load_model(reference, None, None) if reference is not None else None
    spec = probe_spec(ref or tampered, data)
    images = model_data(spec, ref or tampered)
    if ref is not None and not triggers:
        report = run(tampered, ref, images)
    elif ref is not None:
        with progress_bar("synthesising triggers in both models", unit="class") as bar:
            report = run(tampered, ref, images, triggers=True, patch=patch, progress=bar.update)
    else:
        with progress_bar("synthesising triggers", unit="class") as bar:
            report = find_blind(tampered, images, patch=patch, progress=bar.update)
    report["data"], report["model"] = spec, model
    if as_json:
        echo_json(report, {"model": model, "weights": weights, "reference": reference, "data": spec, "patch": patch,
                           "triggers": triggers},
                  tampered.weights_hash)  # fmt: skip
        return
    if report.get("trigger"):
        t = report["trigger"]
        click.echo(f"target class {report['target_class']}: a {t['patch']}x{t['patch']} patch at row "
                   f"{t['position'][0]}, column {t['position'][1]} sends {t['success']:.0%} of other-class images there "
                   f"(mean logit margin {t['margin']:+.2f})")  # fmt: skip
    for k, s in enumerate(report["suspects"][:top]):
        click.echo(f"{k + 1:>3}  {s['neuron']:<12} {s['score']:8.1f}  {'; '.join(s['evidence']) or '-'}")


@audit.command()
@click.argument("report_path", metavar="REPORT.json", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False), help="The plant's key.")
@click.option("--model", "model", metavar="MODEL", help="The tampered model (with --weights): a backdoor's or a "
              "conjunction's score checks whether the top suspects respond to what was planted.")  # fmt: skip
@click.option("--weights", type=click.Path(dir_okay=False), help="The tampered state_dict (weights_only=True).")
@click.option("--json", "as_json", is_flag=True, help="Print the score as JSON.")
def score(report_path, key_path, model, weights, as_json):
    """Did REPORT (from `audit find --json`, or `diff --json`) name the planted neurons? hit@1, hit@3; for
    a backdoor or a conjunction, the target class named and how many top-3 suspects respond (give --model).

    \b
    Example:
      circuits audit score report.json --key key.json --json
      circuits audit score blind.json --key key.json --model zoo:plain-cnn-s0 --weights tampered.pt
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
    if weights is not None and model is None:
        raise UsageError("--weights needs --model: the architecture the tampered weights belong to")
    tampered = load_model(model, weights, None) if model is not None else None
    result = run(*loaded, tampered)
    if as_json:
        echo_json(result, {"report": report_path, "key": key_path, "model": model, "weights": weights})
        return
    if result["hit@1"] is not None or result["kind"] not in ("backdoor", "conjunction"):
        click.echo(f"{result['kind']}: planted neuron at rank {result['rank']}, hit@1 {result['hit@1']}, "
                   f"hit@3 {result['hit@3']}, top suspect score {result['top_score']}")  # fmt: skip
        return
    named = result["target_class_named"]
    line = f"{result['kind']}: target class {result['target_class']}, named {result['named_class']} ({named})"
    if result["responding@3"] is not None:
        line += (f"; {result['responding@3']} of the top 3 suspects respond (chance per neuron "
                 f"{result['chance']:.0%})")  # fmt: skip
    else:
        line += "; give --model (and --weights) to check whether the suspects respond"
    click.echo(line)
