"""PROGRAM.md: the program as a reader meets it, every neuron with its inputs, label and measured R²."""

from __future__ import annotations

LISTED = 4  # inputs shown per neuron in the table (manifest.json has every one)


def program_md(manifest: dict, faithfulness: dict | None = None) -> str:
    """The package's PROGRAM.md, from its manifest and (after ``circuits verify``) what was measured."""
    lines = [f"# {_cell(manifest.get('model'))} as a program", "",
             f"Compiled by circuits {manifest['tool_version']} from the weights with sha256 `{manifest['weights_sha256']}`; "
             f"{_cell(manifest['pruning'])}.", "",
             f"- **Size:** {len(manifest['layers'])} layers, {manifest['neurons']:,} neurons, {manifest['terms']:,} terms "
             f"(kept inputs), {manifest['lines']:,} lines of Python, {manifest.get('numbers', 0):,} numbers in its "
             "kernel constants.",
             f"- **Entry points:** `predict(images)`, `logits(images)`, `run(images)` in `__init__.py`; images are numpy "
             f"arrays N x {' x '.join(map(str, manifest['input_shape']))}, as the model takes them.",
             "- **Reading a neuron:** its function in the layer's module adds one term per source layer (a convolution "
             "of the kept channels, or a weighted sum for 1x1), then the bias, then the nonlinearity."]  # fmt: skip
    lines += ["", *_faithfulness(faithfulness, manifest.get("model"))]
    lines += _simplifications(manifest.get("simplifications"))
    per_layer = {row["layer"]: row for row in (faithfulness or {}).get("layers", [])}
    neurons = (faithfulness or {}).get("neurons", {})
    for layer in manifest["layers"]:
        measured = per_layer.get(layer["layer"], {})
        lines += ["", f"## {_cell(layer['layer'])} (`{layer['module']}.py`, {layer['kind']}, shape "
                      f"{' x '.join(map(str, layer['shape']))})", ""]  # fmt: skip
        if measured:
            lines.append(f"R² {_num(measured.get('r2'))} end to end, {_num(measured.get('r2_local'))} on the model's own "
                         f"inputs; largest error {measured.get('max_error', 0):.3g}.")  # fmt: skip
        if not layer["exact"]:
            lines.append("Not exact: " + "; ".join(_cell(n) for n in layer["notes"]) + ".")
        lines += ["", "| neuron | function | label | motif role | inputs kept | strongest inputs | R² |",
                  "|---|---|---|---|---:|---|---:|"]  # fmt: skip
        for n in layer["neurons"]:
            shown = ", ".join(f"{_cell(s)} ({w:+.2f})" if w is not None else _cell(s) for s, w in n["inputs"][:LISTED])
            more = f" +{n['kept'] - LISTED}" if n["kept"] > LISTED else ""
            role = " ".join(_cell(r) for r in n.get("motifs", []))
            lines.append(f"| {_cell(n['neuron'])} | `{n['function']}` | {_cell(n.get('label') or '')} | {role} | "
                         f"{n['kept']} of {n['live']} | {shown}{more} | {_num(neurons.get(n['neuron']))} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _simplifications(records: list[dict] | None) -> list[str]:
    """What `--simplify` tried, in the order it tried it, and the R² each was kept or refused on."""
    if records is None:
        return []
    out = ["", "## Simplifications", "",
           f"{sum(r['kept'] for r in records)} of {len(records)} motif collapses kept: each was measured on the probe "
           "images, every neuron it changes run on the model's own inputs, and kept only within the tolerance of "
           "the literal form's R².", ""]  # fmt: skip
    if not records:
        return out[:-1] + ["", "No motif suggested a collapse."]
    out += ["| kept | kind | transform | neurons | R² (literal → collapsed) | why |", "|---|---|---|---|---|---|"]
    for r in records:
        neurons = ", ".join(_cell(m) for m in r["members"])
        if r.get("target"):
            neurons = f"{_cell(r['target'])} = {r['form']} of {neurons}"
        change = (f"{_num(r['literal_r2'])} → {_num(r['collapsed_r2'])} at {_cell(r['neuron'])}"
                  if r.get("literal_r2") is not None else "")  # fmt: skip
        out.append(f"| {'yes' if r['kept'] else 'no'} | {r['kind']} | {_cell(r['transform'])} | {neurons} | {change} | "
                   f"{_cell(r.get('reason') or '')} |")  # fmt: skip
    return out


def _faithfulness(report: dict | None, model) -> list[str]:
    if not report:
        return [f"Not measured yet: run `circuits verify THIS_FOLDER --model {_cell(model or 'MODEL')}` to fill in "
                "the R² below."]  # fmt: skip
    out = [f"## Faithfulness, measured on {_cell(report.get('data') or 'the probe data')} ({report['images']:,} images)", "",
           f"- agreement with the model's class: {report['agreement']:.2%}",
           f"- R² of the logits: {_num(report['logits_r2'])}; largest logit error {report['max_logit_error']:.3g}"]  # fmt: skip
    if report.get("accuracy") is not None:
        out.append(f"- task accuracy: {report['accuracy']:.2%} (the model: {report['model_accuracy']:.2%})")
    return out


def _num(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def _cell(value) -> str:
    """Text for a Markdown table cell: one line, no pipes or backticks that would break the table."""
    return str(value).replace("\n", " ").replace("|", "\\|").replace("`", "'")
