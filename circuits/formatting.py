"""Plain-text views of results: the circuit tree, the layer and motif tables, faithfulness summaries.

They live in the library, not the CLI, so a notebook prints exactly what the command prints. Each takes
the JSON object the matching ``--json`` prints (or a graph), and returns a string. No torch here.
"""

from __future__ import annotations


def aligned(rows: list[tuple[str, ...]], free_last: bool = True) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is left ragged."""
    fixed = len(rows[0]) - 1 if free_last else len(rows[0])
    widths = [max(len(r[i]) for r in rows) for i in range(fixed)]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths)]
        lines.append("  ".join(cells + ([row[-1]] if free_last else [])))
    return "\n".join(lines)


def circuit_tree(payload: dict) -> str:
    """A circuit (``extract --json`` object) as an indented tree, strongest inputs first, + / − for the sign."""
    nodes = {n["id"]: n for n in payload["nodes"]}
    inputs: dict[str, list[dict]] = {}
    for e in payload["edges"]:
        inputs.setdefault(e["target"], []).append(e)
    lines = []

    def describe(node_id):
        n = nodes[node_id]
        extra = [n["nonlinearity"]] if n.get("nonlinearity") else []
        if n.get("label"):
            extra.append(f"“{n['label']}”")
        if n.get("pruned_share"):
            extra.append(f"{n['pruned_share']:.0%} of input strength pruned")
        return node_id + (f"  ({'; '.join(extra)})" if extra else "")

    def walk(node_id, prefix, seen):
        for i, e in enumerate(inputs.get(node_id, [])):
            last = i == len(inputs[node_id]) - 1
            sign = "+" if e["weight"] >= 0 else "−"
            branch = "└─ " if last else "├─ "
            again = e["source"] in seen
            lines.append(f"{prefix}{branch}{sign}{abs(e['weight']):.3f}  {describe(e['source'])}" + ("  (above)" if again else ""))
            if not again:
                walk(e["source"], prefix + ("   " if last else "│  "), seen | {e["source"]})

    lines.append(describe(payload["target"]))
    walk(payload["target"], "", {payload["target"]})
    return "\n".join(lines)


def layers_table(graph) -> str:
    """A :class:`~circuits.graph.NeuronGraph`'s layers: kind, channels, spatial size, what feeds each."""
    rows = [("layer", "kind", "channels", "spatial", "nonlinearity", "fed by (through)")]
    for layer in graph.layers.values():
        fed = ", ".join(layer.sources)
        if layer.path_ops:
            fed += f"  ({', '.join(layer.path_ops)})"
        spatial = "x".join(map(str, layer.spatial)) or "-"
        kind = layer.kind + (" (output)" if layer.is_output and layer.kind != "output" else "")
        rows.append((layer.name, kind, str(layer.channels), spatial, layer.nonlinearity or "-", fed or "-"))
    return aligned(rows)


def motifs_table(payload: dict) -> str:
    """One line per motif (``motifs --json`` object): kind, transform, target, members, score, evidence;
    neurons with a label (``payload["labels"]``) show it beside their id."""
    if not payload["motifs"]:
        return f"no motifs found in {payload['model']}"
    labels = payload.get("labels") or {}
    rows = [("kind", "transform", "target", "members", "score", "evidence")]
    for m in payload["motifs"]:
        rows.append((m["kind"], m["transform"] or "-", _named(m["target"], labels) if m["target"] else "-",
                     _members(m["members"], labels), f"{m['score']:.3f}", _evidence(m)))  # fmt: skip
    return aligned(rows)


def _named(neuron: str, labels: dict) -> str:
    label = labels.get(neuron)
    if not label:
        return neuron
    label = " ".join(str(label).split())  # one line, whatever the label holds
    return f'{neuron} "{label[:28] + "..." if len(label) > 31 else label}"'


def _members(members: list[str], labels: dict | None = None) -> str:
    members = [_named(m, labels or {}) for m in members]
    text = ", ".join(members[:6])
    return text + (f", ... ({len(members)})" if len(members) > 6 else "")


def _evidence(m: dict) -> str:
    e = m["evidence"]
    parts = []
    if m["kind"] == "network":
        z = e.get("z")
        return f"{e['pattern']}: {e['count']} vs {e['random_mean']:.1f}±{e['random_std']:.1f}" + (
            f", z={z:.1f}" if z is not None else "")
    if m["kind"] == "polysemantic":
        return f"clusters by {e['factor']}: " + " | ".join(
            ", ".join(f"{k} {v}" for k, v in c[e["factor"]].items()) for c in e["clusters"])
    if e.get("carried_by") == "activations":
        parts.append("activation-led")
    for key in ("weights", "activations"):
        source = e.get("invariance", e) if m["kind"] == "union" else e.get("pair", e) if m["kind"] == "inhibition" else e
        value = source.get(key) if isinstance(source, dict) else None
        parts.append(f"{key} {value:.2f}" if isinstance(value, (int, float)) else f"{key} -")
    if m["kind"] == "union":
        parts.append(f"logic {e.get('logic')}")
    if e.get("angle"):
        parts.append(f"{e['angle']:g}°")
    return ", ".join(parts)


def explain_lines(report: dict) -> list[str]:
    """``motifs --explain``: per transform, the verdict, then each kind of evidence against its gate."""

    def num(v):
        return "-" if v is None else f"{v:.2f}"

    lines = [f"{report['a']} -> {report['b']} in {report['layer']}" + (f" on {report['data']}" if report["data"] else
                                                                        " (weights only: pass --data for activations)")]  # fmt: skip
    for t in report["transforms"]:
        name = t["transform"] + (f" {t['angle']:g}°" if t["transform"] == "rotate" else "")
        lines.append(f"{name}: {t['reason']}")
        w, a, m = t.get("weights"), t.get("activations"), t.get("margin")
        if w:
            fidelity = "" if w["fidelity"] is None else (f"; fidelity {num(w['fidelity'][0])}, {num(w['fidelity'][1])}: "
                                                         + ("they speak" if w["speak"] else "they cannot speak"))  # fmt: skip
            lines.append(f"  weights {num(w['cosine'])} (>= {w['threshold']:.2f}), detail {num(w['detail'])} "
                         f"(>= {w['detail_threshold']:.2f}): {'pass' if w['passes'] else 'fail'}{fidelity}")  # fmt: skip
        if a:
            lines.append(f"  activations {num(a['correlation'])} (>= {a['threshold']:.2f}; "
                         f"{a['led_threshold']:.2f} and a margin of {a['led_margin']:.2f} when they alone carry it): {'pass' if a['passes'] else 'fail'}")  # fmt: skip
        if m:
            lines.append(f"  score {num(m['score'])} vs self {num(m['self'][0])}, {num(m['self'][1])} and untransformed "
                         f"{num(m['untransformed'])} (margin {m['needed']:.2f}): {'pass' if m['passes'] else 'fail'}")  # fmt: skip
    return lines


def diff_report(result: dict, top: int = 10) -> str:
    """``circuits diff``: the neurons that changed most, the naive baseline beside them, edges and motifs."""
    moved = sorted({m["layer"] for m in result["matches"] if m["a"] != m["b"]})
    lines = [f"{result['model_b']} against {result['model_a']} on {result['data']}; layers compared: "
             f"{', '.join(result.get('layers', []))}"]
    lines.append("matched by assignment: " + (", ".join(moved) if moved else "none (every layer kept its indices)"))
    rows = [("rank", "neuron", "match", "score", "why", "naive baseline")]
    naive = result["baseline"]
    for k, n in enumerate(result["neurons"][:top]):
        why = "; ".join(n["reasons"]) or "within the layer's drift"
        base = f"{naive[k]['neuron']} ({naive[k]['score']:.0%})" if k < len(naive) else ""
        rows.append((str(k + 1), n["neuron"], n["match"], f"{n['score']:.1f}", why, base))
    lines += ["", aligned(rows)]
    if result["edges"]:
        rows = [("edge", "strength A", "strength B", "score")]
        rows += [(f"{e['source']} -> {e['target']}", f"{e['weight_a']:+.3f}", f"{e['weight_b']:+.3f}", f"{e['score']:.1f}")
                 for e in result["edges"][:top]]  # fmt: skip
        lines += ["", aligned(rows)]
    for change in ("gained", "lost"):
        for m in result["motifs"][change]:
            lines.append(f"motif {change}: {m['kind']} {m['transform'] or ''} {m['target'] or ''} "
                         f"{', '.join(m['members'])}".replace("  ", " "))  # fmt: skip
    return "\n".join(lines)


def faithfulness_summary(report: dict) -> str:
    """A :func:`circuits.compile.verify` report: the target's numbers, then each other neuron's R²."""

    def number(value):
        return "n/a (constant)" if value is None else f"{value:.4f}"

    lines = [f"{report['target']}: R² {number(report['r2'])}, r {number(report['pearson'])}, "
             f"top-image agreement {number(report['top_image_agreement'])} on {report['images']} images"
             + (" (end to end)" if report["end_to_end"] else "")]  # fmt: skip
    for neuron, numbers in report.get("neurons", {}).items():
        if neuron != report["target"]:
            lines.append(f"  {neuron}: R² {number(numbers['r2'])}")
    return "\n".join(lines)


def zoo_table(rows: list[dict]) -> str:
    """``zoo list --json`` models: name, architecture, parameters, accuracy, recipe hash."""
    width = max(len("name"), *(len(row["name"]) for row in rows)) + 1
    lines = [f"{'name':<{width}} {'architecture':<13} {'params':>8} {'accuracy':>9}  recipe hash"]
    lines += [f"{row['name']:<{width}} {row['architecture']:<13} {row['params']:>8,} {row['accuracy']:>9.4f}  "
              f"{row['recipe_hash']}" for row in rows]  # fmt: skip
    return "\n".join(lines)


def zoo_catalog_table(rows: list[dict]) -> str:
    """``zoo catalog`` summary rows: unions found, modules written and their median R², per model."""
    width = max((len(row["model"]) for row in rows), default=0) + 1
    lines = []
    for row in rows:
        r2 = "-" if row["median_r2"] is None else f"{row['median_r2']:.3f}"
        lines.append(f"{row['model']:<{width}} unions {row['unions']:>3}  modules {row['modules']:>3}  median R² {r2}")
    return "\n".join(lines)


def program_report(report: dict) -> str:
    """A :func:`circuits.program.verify_program` report: the whole program's numbers, then each layer's."""

    def number(value):
        return "n/a (constant)" if value is None else f"{value:.4f}"

    lines = [f"agreement {report['agreement']:.2%} with the model's class on {report['images']:,} images"
             + (f" ({report['data']})" if report.get("data") else "")
             + (f"; accuracy {report['accuracy']:.2%} (the model: {report['model_accuracy']:.2%})"
                if report.get("accuracy") is not None else ""),
             f"logits R² {number(report['logits_r2'])}, largest logit error {report['max_logit_error']:.3g}",
             "layer R² (end to end / on the model's own inputs), largest error:"]  # fmt: skip
    width = max(len(row["layer"]) for row in report["layers"]) if report["layers"] else 0
    def flag(row):
        if not row["exact"]:
            return "  (not exact)"
        return "" if row.get("exact_measured") is not False else "  (written as exact, measured off: please report it)"

    lines += [f"  {row['layer']:<{width}}  {number(row['r2'])} / {number(row['r2_local'])}  {row['max_error']:.3g}"
              + flag(row) for row in report["layers"]]  # fmt: skip
    return "\n".join(lines)


def program_summary(folder, manifest: dict, report: dict | None) -> str:
    """What `circuits compile` wrote, and (when it measured) how faithful it is."""
    lines = [f"program written to {folder}: {len(manifest['layers'])} layers, {manifest['neurons']:,} neurons, "
             f"{manifest['terms']:,} terms, {manifest['lines']:,} lines ({manifest['pruning']})"]  # fmt: skip
    if report is None:
        lines.append(f"not measured: run `circuits verify {folder} --model {manifest.get('model') or 'MODEL'} --data SPEC`")
    else:
        lines.append(program_report(report))
    lines.append(f"read {folder}/PROGRAM.md first")
    return "\n".join(lines)


def scan_lines(report: dict, dry_run: bool = False) -> list[str]:
    """A scan (``circuits scan --json`` object): the plan with each shard's parts, and what it ran or will cost."""
    rows = [("model", "layer", "kind", "neurons", "to run", "done")]
    for s in report["shards"]:
        rows.append((s["model"], s["layer"], s["kind"], str(s["channels"]), ",".join(s["run"]) or "-",
                     ",".join(s["done"]) or "-"))  # fmt: skip
    counts, cost = report["counts"], report["estimate"]
    lines = [aligned(rows)] if report["shards"] else ["no shards"]
    lines.append(f"{counts['shards']} shards, {counts['parts']} parts: {counts['done']} already in the catalog "
                 f"(skipped), {counts['to_run']} to run in {counts['shards_to_run']} shards")  # fmt: skip
    if cost["seconds"] is None and counts["to_run"]:
        lines.append("estimated cost: no measurements yet (a scan measures every shard it runs)")
    elif counts["to_run"]:
        unmeasured = f", plus {', '.join(cost['unmeasured'])} (no measurements yet)" if cost["unmeasured"] else ""
        lines.append(f"estimated cost: {cost['seconds']:.1f} s of shard time from {cost['measured_parts']} measured "
                     f"parts{unmeasured}")  # fmt: skip
    if not dry_run:
        lines.append(f"recorded {counts['recorded']} shards ({counts['rows']} rows)")
    return lines
