"""Emit a circuit as a self-contained, annotated numpy module: one function per neuron, inputs first.

The module is meant to be read like a program and run like the model: ``target(inputs)`` computes the
target neuron's activation map from the leaf neurons' maps. Small kernels are inline literals; large ones
live in an adjacent ``.npz`` named by content hash. Labels are data: they reach the code only through
:mod:`circuits.compile.naming`, so no label can inject code.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from circuits import arguments
from circuits.circuit import as_circuit
from circuits.compile import nonlinearities
from circuits.compile.forms import (
    FamilyForm,
    UnionForm,
    case_lines,
    cases_doc,
    family_function,
    family_name,
    member_function,
)
from circuits.compile.naming import identifier, text
from circuits.compile.source import (
    HELPERS,
    Output,
    input_term,
    kernel_inputs,
    quoted_label,
    records_literal,
    short_label,
    with_bias,
    wrap_call,
    wrap_doc,
)
from circuits.errors import UsageError

FAITHFULNESS_BEGIN = "# --- faithfulness (rewritten by `circuits verify`) ---"
FAITHFULNESS_END = "# --- end faithfulness ---"
SIMPLIFICATIONS_COMMENT = (
    "# Collapsed forms tried (circuits.compile.simplify): a form is kept only when every\n"
    "# neuron it changes keeps its R² within the tolerance of the literal form's."
)


@dataclass
class EmittedModule:
    """Source code plus the large constants it loads from ``npz_name`` (beside the .py file)."""

    code: str
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    npz_name: str | None = None
    functions: dict[str, str] = field(default_factory=dict)  # neuron id -> function name

    def write(self, path: str | Path) -> Path:
        """Write the module and its .npz beside it; each file appears whole or not at all."""
        from circuits.pyfiles import write_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.npz_name:
            buffer = io.BytesIO()
            np.savez(buffer, **self.constants)
            write_atomic(path.parent / self.npz_name, buffer.getvalue())
        write_atomic(path, self.code.encode())
        return path

    def load(self):
        """The module imported from memory (written to a scratch folder and read back, constants and all),
        so it can be verified or run without a file the caller has to keep."""
        import tempfile

        from circuits.pyfiles import import_file

        with tempfile.TemporaryDirectory() as folder:
            module = import_file(self.write(Path(folder) / "emitted.py"), "_circuits_emitted", register=False)
            if hasattr(module, "_CONSTANTS"):
                module._CONSTANTS = {key: module._CONSTANTS[key] for key in module._CONSTANTS.files}
        return module


def emit(circuit: nx.DiGraph, motifs: list[dict] | None = None, inline_limit: int = 25,
         forms: list | tuple = (), simplifications: list[dict] | None = None, dropped=None) -> EmittedModule:  # fmt: skip
    """Reverse-compile ``circuit`` (from :func:`circuits.extraction.extract`) into Python source.

    motifs: motif dicts (``circuits motifs --json`` shape); a neuron's role in them goes in its docstring.
    inline_limit: kernels with at most this many entries are written as literals.
    forms: :class:`FamilyForm` / :class:`UnionForm` collapses to write instead of the literal functions;
    simplifications: the record of what was tried (:func:`circuits.compile.collapse.simplify`), written as
    the module's ``SIMPLIFICATIONS``. Without them the module is the literal form.
    dropped: the inputs pruning dropped are zero (None or ``"zero"``, the default: emit has no data), or
    replaced by their mean contribution, a :class:`~circuits.compile.dropped.DroppedMeans` measured by
    :func:`~circuits.compile.dropped.dropped_means` (``compile_circuit(..., dropped="mean")`` does both).
    """
    circuit = as_circuit(circuit)
    dropped = _dropped(dropped)
    if circuit.graph.get("target") not in circuit:
        raise UsageError("the circuit's target is not one of its nodes (an empty or hand-made graph): emit a "
                         "circuit from circuits.extract or Circuit.from_json")  # fmt: skip
    if circuit.in_degree(circuit.graph["target"]) == 0:
        raise UsageError(f"the circuit of {circuit.graph['target']} has no inputs (an input channel, or every edge "
                         "was pruned): there is nothing to compile; pick a later neuron or a lower --threshold")  # fmt: skip
    inline_limit = arguments.integer(inline_limit, "inline_limit", minimum=0)
    bare = [n for n in circuit if circuit.in_degree(n) and "inputs" not in circuit.nodes[n]]
    if bare:
        raise UsageError(f"the circuit has no input geometry for {bare[0]} (it was saved without it, e.g. by an "
                         "older circuits or catalog): re-extract it to emit code")  # fmt: skip
    order = list(nx.lexicographical_topological_sort(circuit, key=lambda n: _sort_key(circuit, n)))
    leaves = [n for n in order if circuit.in_degree(n) == 0]
    taken: set[str] = set()
    names = {n: identifier(circuit.nodes[n].get("label"), n.replace(":", "_"), taken) for n in order}
    roles = motif_roles(motif_dicts(motifs), {n: circuit.nodes[n].get("label") for n in circuit})
    out = Output(inline_limit=inline_limit, dropped=dropped)
    families = {m: f for f in forms if isinstance(f, FamilyForm) for m in f.members}
    unions = {f.target: f for f in forms if isinstance(f, UnionForm)}
    functions: list[str] = []
    family_names: dict[int, str] = {}
    for node in order:
        if node in leaves:
            continue
        family = families.get(node)
        if family is not None and id(family) not in family_names:  # the first member met, in any order
            family_names[id(family)] = family_name(circuit, family, taken)
            functions.append(family_function(circuit, family, family_names[id(family)], out))
        if family is not None:
            functions.append(member_function(circuit, family, family_names[id(family)], node, names, out))
        else:
            functions.append(_function(circuit, node, names, roles, out, inline_limit, unions.get(node)))
    constants, literals, helpers, wiring = out.constants, out.literals, out.helpers, out.wiring
    npz_name = _npz_name(constants) if constants else None
    code = _module(circuit, order, leaves, names, functions, literals, helpers, npz_name, wiring, simplifications,
                   out)  # fmt: skip
    return EmittedModule(code=code, constants=constants, npz_name=npz_name, functions={n: names[n] for n in order})


def _dropped(dropped):
    """emit's ``dropped`` argument checked: None for zero, else the measured means (anything with ``fill``)."""
    if dropped is None or (isinstance(dropped, str) and dropped == "zero"):
        return None
    if isinstance(dropped, str) and dropped == "mean":
        raise UsageError("emit has no probe data to take the mean of the dropped inputs on: pass dropped="
                         "dropped_means(circuit, model, data), or use compile_circuit(..., dropped='mean')")  # fmt: skip
    if not callable(getattr(dropped, "fill", None)):
        raise UsageError(f"dropped must be 'zero' or the means from circuits.compile.dropped.dropped_means, got "
                         f"{arguments.shown(dropped)}")  # fmt: skip
    return dropped


def _sort_key(circuit, node):
    attrs = circuit.nodes[node]
    return f"{999 - attrs['depth']:03d}|{attrs['layer']}|{attrs['channel']:06d}"


def _function(circuit, node, names, roles, out, inline_limit, union=None) -> str:
    attrs = circuit.nodes[node]
    out.inline_limit = inline_limit
    everything = kernel_inputs(circuit, node)
    inputs, body, lines = everything, [], []
    if union is not None:
        body = case_lines(circuit, union, names[node], out)
        inputs = [i for i in everything if i[0] not in union.cases]
    for i, (source, _, kernel, geometry) in enumerate(inputs):
        const = f"{names[node].upper()}_K{i}"
        out.constant(const, kernel, f"{text(source)} -> {text(node)}")
        out.wiring.setdefault(node, []).append((source, const))
        term, needed = input_term(circuit, source, node, const, kernel, geometry)
        out.helpers.update(needed)
        body.append(wrap_call(f"    total {'=' if not body else '+='} ", term))
    for source, edge, _, _ in everything:
        label = circuit.nodes[source].get("label")
        lines.append(f"      {edge['weight']:+.4f}  {text(source)}" + (" " + quoted_label(label) if label else ""))
    bias = attrs.get("bias")
    activation = attrs.get("activation")
    fill = out.fill(node, [source for source, _, _, _ in everything], f"{names[node].upper()}_DROPPED")
    applied, helper = nonlinearities.call(activation, with_bias("total", bias, fill))
    if helper:
        out.helpers.add(helper)
    pruned = attrs.get("pruned_share") or 0.0
    title = text(node) + quoted_label(attrs.get("label"))
    kind = activation["name"] if activation else "linear"
    doc = [f'    """{title}: {kind} of {len(lines)} inputs.', ""]
    notes = [f"    Pruned inputs carry {pruned:.0%} of the input strength."] if pruned else []
    if fill:
        notes.append(out.fill_doc(node))
    elif node in getattr(out.dropped, "left_out", {}):
        notes.append(out.left_out_doc(node))
    doc += (notes + [""]) if notes else []
    doc += [wrap_doc(text(r)) for r in roles.get(node, [])]
    if union is not None:
        doc += cases_doc(union)
    doc += (["", "    Inputs (signed strength):"] if roles.get(node) or union else ["    Inputs (signed strength):"]) + lines
    if bias is None:
        doc.append("    Bias: unknown on an expanded (through) step; taken as 0.")
    doc.append('    """')
    return "\n".join([f"def {names[node]}(acts):", *doc, *body, f"    return {applied}", ""])


def _npz_name(constants: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(constants):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(constants[key], dtype=np.float64).tobytes())
    return f"circuit-{digest.hexdigest()[:16]}.npz"


def motif_dicts(motifs) -> list[dict]:
    """Motif dicts (``circuits motifs --json``) or ``Motif`` records, checked: anything else is a UsageError."""
    if motifs is None:
        return []
    dicts = [m.to_dict() if hasattr(m, "to_dict") else m for m in motifs] if isinstance(motifs, (list, tuple)) else None
    for m in dicts if dicts is not None else [None]:
        members = m.get("members", []) if isinstance(m, dict) else None
        if (not isinstance(members, list) or not all(isinstance(x, str) for x in members)
                or not isinstance(m.get("kind"), str) or not isinstance(m.get("target") or "", str)):
            raise UsageError(f"motifs must be a list of motif dicts (the `circuits motifs --json` shape) or Motif "
                             f"records, got {arguments.shown(motifs)}")  # fmt: skip
    return dicts


def motif_roles(motifs: list[dict], labels: dict) -> dict[str, list[str]]:
    """Each neuron's roles in ``motifs``, as docstring sentences (``labels``: neuron -> label, or None)."""
    roles: dict[str, list[str]] = {}
    for m in motifs:
        members = [f"{x} \"{short_label(labels[x])}\"" if labels.get(x) else x for x in m.get("members", [])]
        transform = m.get("transform") or ""
        if m.get("target") and m["kind"] == "union":
            roles.setdefault(m["target"], []).append(f"Union over {transform}: OR of {' and '.join(members)}.")
        elif m.get("target") and m["kind"] == "inhibition":
            roles.setdefault(m["target"], []).append(f"Inhibited by {', '.join(members)} ({transform or 'opponent'}).")
        for x in m.get("members", []):
            if m["kind"] == "equivariance":
                roles.setdefault(x, []).append(f"Member of a {transform} family: {', '.join(m['members'])}.")
    return roles


def _module(circuit, order, leaves, names, functions, literals, helpers, npz_name, wiring, simplifications,
            out=None) -> str:  # fmt: skip
    g = circuit.graph
    header = [
        f'"""Reverse-compiled circuit of {text(g["target"])} in {text(g.get("model"))}.',
        "",
        f"Emitted by circuits: method={text(g.get('method'))}, depth={g.get('depth')}, "
        f"top_k={g.get('top_k')}, from the weights",
        f"with sha256 {text(g.get('weights_sha256'))}.",
        "",
        "One function per neuron, inputs first. `target(inputs)` computes the target",
        "from the leaf neurons' activation maps (arrays [N, H, W], or [N] for dense",
        "layers), keyed by neuron id. Faithfulness to the model is measured, not",
        "claimed: FAITHFULNESS below is filled in by `circuits verify`.",
        "",
        "Leaf neurons (inputs): " + ", ".join(text(n) for n in leaves),
        '"""',
    ]
    imports = "from pathlib import Path\n\nimport numpy as np" if npz_name else "import numpy as np"
    meta = [
        f"MODEL = {g.get('model')!r}",
        f"WEIGHTS_SHA256 = {g.get('weights_sha256')!r}",
        f"TARGET = {g['target']!r}",
        f"LEAVES = {leaves!r}",
        "",
        FAITHFULNESS_BEGIN,
        "FAITHFULNESS = None",
        FAITHFULNESS_END,
    ]
    fills = out.fills if out is not None else {}
    left_out = getattr(out.dropped, "left_out", {}) if out is not None else {}
    if fills or left_out:
        import textwrap

        data = getattr(out.dropped, "data", None)
        on = text(data) if data else "the probe data"
        words = (f"Inputs that pruning dropped are replaced by their mean contribution on {on} "
                 "(circuits.compile.dropped): each neuron's NAME_DROPPED below, added to its bias."
                 if fills else "")  # fmt: skip
        if left_out:
            words += (" " if words else "") + (f"Neurons in DROPPED_LEFT_OUT fit the model better on {on} with "
                                               "their dropped inputs left out, and leave them out.")  # fmt: skip
        meta += ["", *textwrap.wrap(words, width=86, initial_indent="# ", subsequent_indent="# ",
                                    break_long_words=False), f"DROPPED_DATA = {data!r}"]  # fmt: skip
    if simplifications is not None:
        meta += ["", SIMPLIFICATIONS_COMMENT, "SIMPLIFICATIONS = " + records_literal(simplifications)]
    if npz_name:
        meta += ["", f'_CONSTANTS = np.load(Path(__file__).with_name("{npz_name}"))']
    if literals:
        meta += ["", "\n".join(literals)]
    parts = ["\n".join(header).rstrip("\n") + "\n\n" + imports + "\n\n" + "\n".join(meta)]
    parts += [(HELPERS.get(name) or nonlinearities.SOURCE[name]).rstrip("\n") for name in sorted(helpers)]
    parts += [f.rstrip("\n") for f in functions]
    run = ["def run(inputs):", '    """Every neuron of the circuit from the leaf activations, by neuron id."""',
           "    acts = {key: np.asarray(value, dtype=np.float64) for key, value in inputs.items()}",
           "    missing = [name for name in LEAVES if name not in acts]",
           "    if missing:",
           '        raise KeyError(f"missing leaf activations: {missing}")']  # fmt: skip
    run += [f'    acts["{text(n)}"] = {names[n]}(acts)' for n in order if n not in leaves]
    run += ["    return acts"]
    parts.append("\n".join(run))
    parts.append('def target(inputs):\n    """The target neuron\'s activation map."""\n    return run(inputs)[TARGET]')
    neurons = [f"    {n!r}: {names[n]}," for n in order if n not in leaves]
    parts.append("NEURONS = {\n" + "\n".join(neurons) + "\n}")
    wires = []
    for n in (n for n in order if n in wiring):
        wires += [f"    {n!r}: ["] + [f"        ({s!r}, {c})," for s, c in wiring[n]] + ["    ],"]
    parts.append("# who feeds whom: target -> [(source, kernel)]\nWIRING = {\n" + "\n".join(wires) + "\n}")
    if fills:
        rows = [f"    {n!r}: {fills[n][0]}," for n in order if n in fills]
        parts.append("# the dropped inputs' mean contribution, per neuron (circuits.compile.dropped)\n"
                     "DROPPED = {\n" + "\n".join(rows) + "\n}")  # fmt: skip
    if left_out:
        rows = [f"    {n!r}: {tuple(left_out[n])!r}," for n in order if n in left_out]
        parts.append("# neurons whose dropped inputs are left out, as they fit better so: (R² zero, R² mean)\n"
                     "DROPPED_LEFT_OUT = {\n" + "\n".join(rows) + "\n}")  # fmt: skip
    return "\n\n\n".join(parts) + "\n"
