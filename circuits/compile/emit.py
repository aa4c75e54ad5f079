"""Emit a circuit as a self-contained, annotated numpy module: one function per neuron, inputs first.

The module is meant to be read like a program and run like the model: ``target(inputs)`` computes the
target neuron's activation map from the leaf neurons' maps. Small kernels are inline literals; large ones
live in an adjacent ``.npz`` named by content hash. Labels are data: they reach the code only through
:mod:`circuits.compile.naming`, so no label can inject code.
"""

from __future__ import annotations

import hashlib
import io
import pprint
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from circuits.compile import nonlinearities
from circuits.compile.naming import identifier, text

FAITHFULNESS_BEGIN = "# --- faithfulness (rewritten by `circuits verify`) ---"
FAITHFULNESS_END = "# --- end faithfulness ---"
SIMPLIFICATIONS_COMMENT = (
    "# Collapsed forms tried (circuits.compile.simplify): a form is kept only when every\n"
    "# neuron it changes keeps its R² within the tolerance of the literal form's."
)

HELPERS = {
    "_correlate": '''def _correlate(x, kernel, stride, pad, out):
    """Cross-correlate maps x [N, H, W] with a kernel [kh, kw], as nn.Conv2d does.

    pad = zero rows/columns (top, left) before the map; out = (height, width).
    """
    (sy, sx), (top, left), (oh, ow) = stride, pad, out
    kh, kw = kernel.shape
    x = x[:, max(-top, 0):, max(-left, 0):]  # a negative pad crops
    top, left = max(top, 0), max(left, 0)
    n, h, w = x.shape
    height = max((oh - 1) * sy + kh, top + h)
    width = max((ow - 1) * sx + kw, left + w)
    canvas = np.zeros((n, height, width))
    canvas[:, top:top + h, left:left + w] = x
    result = np.zeros((n, oh, ow))
    for dy in range(kh):
        for dx in range(kw):
            rows = slice(dy, dy + (oh - 1) * sy + 1, sy)
            cols = slice(dx, dx + (ow - 1) * sx + 1, sx)
            result += kernel[dy, dx] * canvas[:, rows, cols]
    return result
''',
    "_max_pool": '''def _max_pool(x, kernel, stride, padding, ceil_mode):
    """Max pooling of maps x [N, H, W], as torch's max_pool2d computes it."""
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    n, h, w = x.shape

    def length(size, k, s, p):
        out = (size + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
        return out - 1 if ceil_mode and (out - 1) * s >= size + p else out

    oh, ow = length(h, kh, sy, py), length(w, kw, sx, px)
    height = max(h + 2 * py, (oh - 1) * sy + kh)
    width = max(w + 2 * px, (ow - 1) * sx + kw)
    canvas = np.full((n, height, width), -np.inf)
    canvas[:, py:py + h, px:px + w] = x
    result = np.full((n, oh, ow), -np.inf)
    for dy in range(kh):
        for dx in range(kw):
            rows = slice(dy, dy + (oh - 1) * sy + 1, sy)
            cols = slice(dx, dx + (ow - 1) * sx + 1, sx)
            result = np.maximum(result, canvas[:, rows, cols])
    return result
''',
    "_mirror": '''def _mirror(kernel, mirrored):
    """The kernel mirrored left-right (about its centre) when ``mirrored``."""
    return kernel[:, ::-1] if mirrored else kernel
''',
    "_dense": '''def _dense(x, kernel):
    """A dense neuron reading a whole map x [N, H, W] through a weight map [H, W]."""
    return np.tensordot(x, kernel, axes=([1, 2], [0, 1]))
''',
}


@dataclass
class EmittedModule:
    """Source code plus the large constants it loads from ``npz_name`` (beside the .py file)."""

    code: str
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    npz_name: str | None = None
    functions: dict[str, str] = field(default_factory=dict)  # neuron id -> function name

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.npz_name:
            buffer = io.BytesIO()
            np.savez(buffer, **self.constants)
            (path.parent / self.npz_name).write_bytes(buffer.getvalue())
        path.write_text(self.code)
        return path


@dataclass
class FamilyForm:
    """An equivariant family written as one parametrised function (proposed by :mod:`.simplify`).

    Member ``k`` is ``transform`` applied ``k`` times to one canonical kernel set: kernel ``i`` turned or
    mirrored, read from ``sources[k][i]`` (the input that the transform maps member 0's input ``i`` to).
    """

    transform: str  # "rotate90" or "reflect": exact on a square kernel grid
    members: list[str]  # in transform order
    sources: list[list[str]]  # sources[k][i]: member k's input for canonical kernel i
    kernels: list[np.ndarray]  # canonical kernels, in member 0's frame
    bias: float | None


@dataclass
class UnionForm:
    """A union target written as cases: case ``k`` reads ``cases[k]`` through ``transform``^k of one shared
    kernel; ``form`` adds the case terms (``sum``) or takes their maximum (``max``)."""

    target: str
    transform: str
    cases: list[str]  # in transform order
    kernel: np.ndarray  # the shared kernel, in cases[0]'s frame
    form: str = "sum"


def emit(circuit: nx.DiGraph, motifs: list[dict] | None = None, inline_limit: int = 25,
         forms: list | tuple = (), simplifications: list[dict] | None = None) -> EmittedModule:  # fmt: skip
    """Reverse-compile ``circuit`` (from :func:`circuits.extract.extract`) into Python source.

    motifs: motif dicts (``circuits motifs --json`` shape); a neuron's role in them goes in its docstring.
    inline_limit: kernels with at most this many entries are written as literals.
    forms: :class:`FamilyForm` / :class:`UnionForm` collapses to write instead of the literal functions;
    simplifications: the record of what was tried (:func:`circuits.compile.simplify.simplify`), written as
    the module's ``SIMPLIFICATIONS``. Without them the module is the literal form.
    """
    order = list(nx.lexicographical_topological_sort(circuit, key=lambda n: _sort_key(circuit, n)))
    leaves = [n for n in order if circuit.in_degree(n) == 0]
    taken: set[str] = set()
    names = {n: identifier(circuit.nodes[n].get("label"), n.replace(":", "_"), taken) for n in order}
    roles = _roles(motifs or [], circuit)
    out = _Output()
    families = {m: f for f in forms if isinstance(f, FamilyForm) for m in f.members}
    unions = {f.target: f for f in forms if isinstance(f, UnionForm)}
    functions: list[str] = []
    family_names: dict[int, str] = {}
    for node in order:
        if node in leaves:
            continue
        family = families.get(node)
        if family is not None and node == family.members[0]:
            family_names[id(family)] = _family_name(circuit, family, taken)
            functions.append(_family_function(circuit, family, family_names[id(family)], out))
        if family is not None:
            functions.append(_member_function(circuit, family, family_names[id(family)], node, names, out))
        else:
            functions.append(_function(circuit, node, names, roles, out, inline_limit, unions.get(node)))
    constants, literals, helpers, wiring = out.constants, out.literals, out.helpers, out.wiring
    npz_name = _npz_name(constants) if constants else None
    code = _module(circuit, order, leaves, names, functions, literals, helpers, npz_name, wiring, simplifications)
    return EmittedModule(code=code, constants=constants, npz_name=npz_name, functions={n: names[n] for n in order})


def _sort_key(circuit, node):
    attrs = circuit.nodes[node]
    return f"{999 - attrs['depth']:03d}|{attrs['layer']}|{attrs['channel']:06d}"


@dataclass
class _Output:
    """What writing the functions adds to the module: constants, literals, helpers and the wiring."""

    inline_limit: int = 25
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    literals: list[str] = field(default_factory=list)
    helpers: set[str] = field(default_factory=set)
    wiring: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def constant(self, const: str, kernel: np.ndarray, comment: str) -> None:
        """A kernel as an inline literal when small, else from the .npz beside the module."""
        if kernel.size <= self.inline_limit:
            self.literals.append(f"# {comment}\n{const} = {_literal(kernel)}")
        else:
            self.constants[const] = kernel
            self.literals.append(f"{const} = _CONSTANTS[{const!r}]  # {comment}, {kernel.shape}")


def kernel_inputs(circuit, node):
    """``node``'s inputs, strongest first: (source, edge, kernel, geometry), with the kernel taken at the
    pooled map where the path starts with max pooling."""
    attrs = circuit.nodes[node]
    out = []
    for source, _, edge in sorted(circuit.in_edges(node, data=True), key=lambda e: (-abs(e[2]["weight"]), e[0])):
        geometry = attrs["inputs"][circuit.nodes[source]["layer"]]
        entry = geometry.get("entry") if "entry_kernel" in edge else None
        kernel = np.asarray(edge["entry_kernel"] if entry else edge["kernel"], dtype=np.float64)
        out.append((source, edge, kernel, entry or geometry))
    return out


def _function(circuit, node, names, roles, out, inline_limit, union=None) -> str:
    attrs = circuit.nodes[node]
    out.inline_limit = inline_limit
    everything = kernel_inputs(circuit, node)
    inputs, body, lines = everything, [], []
    if union is not None:
        body = _cases(circuit, union, names[node], out)
        inputs = [i for i in everything if i[0] not in union.cases]
    for i, (source, _, kernel, geometry) in enumerate(inputs):
        const = f"{names[node].upper()}_K{i}"
        out.constant(const, kernel, f"{text(source)} -> {text(node)}")
        out.wiring.setdefault(node, []).append((source, const))
        term, needed = _term(circuit, source, node, const, kernel, geometry)
        out.helpers.update(needed)
        body.append(_wrap(f"    total {'=' if not body else '+='} ", term))
    for source, edge, _, _ in everything:
        label = circuit.nodes[source].get("label")
        lines.append(f"      {edge['weight']:+.4f}  {text(source)}" + (" " + _quoted(label) if label else ""))
    bias = attrs.get("bias")
    activation = attrs.get("activation")
    applied, helper = nonlinearities.call(activation, _plus("total", bias))
    if helper:
        out.helpers.add(helper)
    pruned = attrs.get("pruned_share") or 0.0
    title = text(node) + _quoted(attrs.get("label"))
    kind = activation["name"] if activation else "linear"
    doc = [f'    """{title}: {kind} of {len(lines)} inputs.', ""]
    if pruned:
        doc += [f"    Pruned inputs carry {pruned:.0%} of the input strength.", ""]
    doc += [_wrap_text(text(r)) for r in roles.get(node, [])]
    if union is not None:
        doc += _cases_doc(union)
    doc += (["", "    Inputs (signed strength):"] if roles.get(node) or union else ["    Inputs (signed strength):"]) + lines
    if bias is None:
        doc.append("    Bias: unknown on an expanded (through) step; taken as 0.")
    doc.append('    """')
    return "\n".join([f"def {names[node]}(acts):", *doc, *body, f"    return {applied}", ""])


def _transformed(const: str, transform: str, k: int) -> str:
    """Code for ``transform``^k of a kernel constant (np.rot90 turns counter-clockwise, as torch.rot90)."""
    if transform == "rotate90":
        return f"np.rot90({const}, {k % 4})" if k % 4 else const
    return f"np.fliplr({const})" if k % 2 else const


def _cases(circuit, union, name, out) -> list[str]:
    """The body lines computing a union's case terms and combining them (sum or max)."""
    const = f"{name.upper()}_CASE"
    out.constant(const, union.kernel, f"shared case kernel of {text(union.target)}, in {text(union.cases[0])}'s frame")
    geometries = {s: g for s, _, _, g in kernel_inputs(circuit, union.target)}
    pointwise = union.kernel.size == 1 and all(
        _pointwise(circuit, c, union.target, geometries[c]) for c in union.cases)  # fmt: skip
    terms = []
    for k, case in enumerate(union.cases):
        kernel = _transformed(const, union.transform, k)
        out.wiring.setdefault(union.target, []).append((case, kernel))
        if pointwise:
            terms.append(f'acts["{text(case)}"]')
            continue
        term, needed = _term(circuit, case, union.target, kernel, union.kernel, geometries[case], scalar=False)
        out.helpers.update(needed)
        terms.append(term)
    combine = "np.max(cases, axis=0)" if union.form == "max" else "np.sum(cases, axis=0)"
    weight = f"{_number(union.kernel.reshape(-1)[0])} * " if pointwise else ""
    lines = [f"    cases = [{', '.join(terms)}]"]
    if len(lines[0]) > 88:
        lines = ["    cases = ["] + [_wrap("        ", t) + "," for t in terms] + ["    ]"]
    return lines + [f"    total = {weight}{combine}"]


def _cases_doc(union) -> list[str]:
    how = "the largest case term (an OR)" if union.form == "max" else "the sum of the case terms"
    return [
        f"    Written as cases over {text(union.transform)}: case k reads one shared kernel",
        f"    transformed k times; the cases combine as {how}.",
        "    Measured against the literal form: see SIMPLIFICATIONS.",
    ]


def _family_name(circuit, family, taken) -> str:
    """``<first member's label>_family`` (sanitised like every label), else ``<layer>_<channel>_family``."""
    first = family.members[0]
    label = circuit.nodes[first].get("label")
    return identifier(f"{label[:40]}_family" if label else None, f"{first.replace(':', '_')}_family", taken)


def _family_function(circuit, family, name, out) -> str:
    """One function for a whole family, parametrised by how many times the transform is applied."""
    first, const = family.members[0], name.upper()
    param = "quarter_turns" if family.transform == "rotate90" else "mirrored"
    static = all(row == family.sources[0] for row in family.sources)  # e.g. every member reads the image
    body = [] if static else [f"    sources = {const}_INPUTS[{'int(mirrored)' if param == 'mirrored' else param}]"]
    terms = []
    for i, kernel in enumerate(family.kernels):
        source = family.sources[0][i]
        out.constant(f"{const}_K{i}", kernel, f"canonical kernel {i}: {text(source)} -> {text(first)}")
        geometry = circuit.nodes[first]["inputs"][circuit.nodes[source]["layer"]]
        src = f'acts["{text(source)}"]' if static else "acts[source]"
        term, needed = _term(circuit, source, first, "kernel", kernel, geometry.get("entry") or geometry, src=src,
                             scalar=False)  # fmt: skip
        out.helpers.update(needed)
        terms.append(term)
    move = "np.rot90({}, quarter_turns)" if param == "quarter_turns" else "_mirror({}, mirrored)"
    if not static and len(terms) > 2 and len(set(terms)) == 1:  # every input is placed alike: one loop
        kernels = ", ".join(f"{const}_K{i}" for i in range(len(terms)))
        body += [_wrap("    kernels = ", f"({kernels},)"), "    total = 0.0",
                 "    for source, kernel in zip(sources, kernels):", f"        kernel = {move.format('kernel')}",
                 _wrap("        total = total + ", terms[0])]  # fmt: skip
    else:
        for i, term in enumerate(terms):
            body.append(f"    k{i} = {move.format(f'{const}_K{i}')}")
            term = term.replace("kernel", f"k{i}", 1).replace("acts[source]", f"acts[sources[{i}]]")
            body.append(_wrap(f"    total {'=' if i == 0 else '+='} ", term))
    if param == "mirrored":
        out.helpers.add("_mirror")
    if not static:
        rows = []
        for k, (row, member) in enumerate(zip(family.sources, family.members)):
            line = f"    {list(row)!r},  # {param}={k if param == 'quarter_turns' else bool(k)}: {text(member)}"
            rows.append(line if len(line) <= 88 else "    " + pprint.pformat(list(row), width=80).replace("\n", "\n    ") + ",")
        out.literals.append(f"# the inputs of each copy: {text(family.transform)} maps each input to its partner\n"
                            f"{const}_INPUTS = [\n" + "\n".join(rows) + "\n]")  # fmt: skip
    activation = circuit.nodes[first].get("activation")
    applied, helper = nonlinearities.call(activation, _plus("total", family.bias))
    if helper:
        out.helpers.add(helper)
    how = "turned `quarter_turns` times (np.rot90)" if param == "quarter_turns" else "mirrored when `mirrored`"
    reads = "" if static else f", reading the inputs {text(family.transform)} maps there"
    doc = [
        f'    """A {text(family.transform)} family: ' + ", ".join(text(m) for m in family.members) + ".",
        "",
        _wrap_text(f"Each member is one canonical kernel set {how}{reads}. The kernels are the members' own, "
                   "aligned by the inverse transform and averaged; the bias is their mean."),
        '    """',
    ]
    return "\n".join([f"def {name}(acts, {param}):", *doc, *body, f"    return {applied}", ""])


def _records(records: list[dict], width: int = 86) -> str:
    """A list of flat dicts as a Python literal, a few keys per line (values are repr'd: data, not code)."""
    if not records:
        return "[]"
    out = ["["]
    for record in records:
        items = []
        for key, value in record.items():
            item = f"{key!r}: {value!r}"
            if len(item) > width - 6:
                item = f"{key!r}: " + pprint.pformat(value, width=width - 8 - len(repr(key)), compact=True).replace(
                    "\n", "\n" + " " * (len(repr(key)) + 7))  # fmt: skip
            items.append(item)
        lines, line = [], "    {"
        for item in items:
            if len(line) + len(item) + 2 > width and line.strip() != "{":
                lines.append(line.rstrip())
                line = "     "
            line += item + ", "
        lines.append(line.rstrip().rstrip(",") + "},")
        out += lines
    return "\n".join(out + ["]"])


def _short(label, limit: int = 32) -> str:
    """A label cut to fit a docstring line (cut before escaping, so no escape is split)."""
    label = str(label)
    return label if len(label) <= limit else label[: limit - 3] + "..."


def _quoted(label) -> str:
    """`` "label"`` for a docstring, or nothing."""
    return f' "{text(_short(label))}"' if label else ""


def _wrap_text(words: str, indent: str = "    ", width: int = 88) -> str:
    """A docstring paragraph wrapped to fit the emitted modules' line length."""
    import textwrap

    return "\n".join(textwrap.wrap(words, width=width, initial_indent=indent, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False))  # fmt: skip


def _member_function(circuit, family, function, node, names, out) -> str:
    """A member as a one-liner calling its family's function."""
    k = family.members.index(node)
    title = text(node) + _quoted(circuit.nodes[node].get("label"))
    if family.transform == "rotate90":
        call, what = f"quarter_turns={k}", f"turned {k} quarter turn{'s' if k != 1 else ''}"
    else:
        call, what = f"mirrored={bool(k)}", "mirrored" if k else "as is"
    for i, source in enumerate(family.sources[k]):
        out.wiring.setdefault(node, []).append((source, _transformed(f"{function.upper()}_K{i}", family.transform, k)))
    return "\n".join([
        f"def {names[node]}(acts):",
        _wrap_text(f'"""{title}: {function}, {what}."""'),
        f"    return {function}(acts, {call})",
        "",
    ])  # fmt: skip


def _pointwise(circuit, source, node, geometry) -> bool:
    """True when the input is read at the same position only (a 1x1 kernel on a map of the same size)."""
    if geometry.get("pool") or geometry["position"] is None:
        return False
    source_spatial = list(circuit.nodes[source]["shape"][1:])
    target_spatial = circuit.nodes[node]["shape"][1:]
    stride = geometry["stride"] or [max(1, round(s / t)) for s, t in zip(source_spatial, target_spatial)]
    pad = [p * s - o for p, s, o in zip(geometry["position"], stride, geometry["origin"])]
    return list(stride) == [1, 1] and pad == [0, 0] and source_spatial == target_spatial


def _term(circuit, source, node, const, kernel, geometry, src=None, scalar=True):
    """The code for one input's contribution, and the helpers it needs.

    ``geometry`` places the kernel; when it has a ``pool``, the real max pool is applied to the source
    first and the kernel is the one taken at the pooled map (see compute_kernels(at_entry=True)).
    ``src`` replaces the source's map (``acts[...]``); ``scalar=False`` keeps ``const`` even for a 1x1 kernel.
    """
    src = src or f'acts["{text(source)}"]'
    source_spatial = list(circuit.nodes[source]["shape"][1:])
    target_spatial = circuit.nodes[node]["shape"][1:]
    needed = []
    pool = geometry.get("pool")
    if pool and pool["op"] == "amax":
        src = f"{src}.max(axis=(1, 2){', keepdims=True' if pool['keepdim'] else ''})"
        source_spatial = [1, 1] if pool["keepdim"] else []
    elif pool:
        src = f"_max_pool({src}, {tuple(pool['kernel_size'])}, {tuple(pool['stride'])}, {tuple(pool['padding'])}, {pool['ceil_mode']})"
        source_spatial = [_pooled(n, k, s, p, pool["ceil_mode"]) for n, k, s, p in
                          zip(source_spatial, pool["kernel_size"], pool["stride"], pool["padding"])]  # fmt: skip
        needed.append("_max_pool")
    if geometry["position"] is None:  # dense target
        if not source_spatial and scalar:
            return f"{_number(kernel.reshape(-1)[0])} * {src}", needed
        return f"_dense({src}, {const})", [*needed, "_dense"]
    position, origin = geometry["position"], geometry["origin"]
    stride = geometry["stride"] or [max(1, round(s / t)) for s, t in zip(source_spatial, target_spatial)]
    pad = [p * s - o for p, s, o in zip(position, stride, origin)]
    if scalar and kernel.size == 1 and list(stride) == [1, 1] and pad == [0, 0] and source_spatial == target_spatial:
        return f"{_number(kernel.reshape(-1)[0])} * {src}", needed
    return f"_correlate({src}, {const}, {tuple(stride)}, {tuple(pad)}, {tuple(target_spatial)})", [*needed, "_correlate"]


def _wrap(prefix: str, call: str, width: int = 88) -> str:
    """``prefix + call`` on one line if it fits, else one argument per line (keeps modules ruff-clean)."""
    if len(prefix) + len(call) <= width or "(" not in call:
        return prefix + call
    name, _, inner = call.partition("(")
    args, depth, current = [], 0, ""
    for ch in inner[:-1]:  # split the outer argument list at top-level commas
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += ch
    args.append(current.strip())
    indent = " " * (len(prefix) - len(prefix.lstrip()) + 4)
    return prefix + name + "(\n" + "".join(f"{indent}{a},\n" for a in args) + indent[:-4] + ")"


def _pooled(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Output length of max pooling, as torch computes it."""
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _plus(expression: str, bias) -> str:
    if bias is None or float(bias) == 0.0:
        return expression
    return f"{expression} {'-' if bias < 0 else '+'} {_number(abs(bias))}"


def _literal(kernel: np.ndarray) -> str:
    """One kernel row per line; float32 values in their shortest exact form (the model's own precision)."""
    rows = ["    [" + ", ".join(_number(v) for v in row) + "]," for row in np.atleast_2d(kernel)]
    if len(rows) == 1:
        return f"np.array([{rows[0].strip().rstrip(',')}])"
    return "np.array([\n" + "\n".join(rows) + "\n])"


def _number(value) -> str:
    return str(np.float32(value)) if np.isfinite(value) else "float('nan')"


def _npz_name(constants: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(constants):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(constants[key], dtype=np.float64).tobytes())
    return f"circuit-{digest.hexdigest()[:16]}.npz"


def _roles(motifs: list[dict], circuit) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {}
    for m in motifs:
        members = [f"{x} \"{_short(circuit.nodes[x].get('label'))}\"" if x in circuit and circuit.nodes[x].get("label")
                   else x for x in m.get("members", [])]  # fmt: skip
        transform = m.get("transform") or ""
        if m.get("target") and m["kind"] == "union":
            roles.setdefault(m["target"], []).append(f"Union over {transform}: OR of {' and '.join(members)}.")
        elif m.get("target") and m["kind"] == "inhibition":
            roles.setdefault(m["target"], []).append(f"Inhibited by {', '.join(members)} ({transform or 'opponent'}).")
        for x in m.get("members", []):
            if m["kind"] == "equivariance":
                roles.setdefault(x, []).append(f"Member of a {transform} family: {', '.join(m['members'])}.")
    return roles


def _module(circuit, order, leaves, names, functions, literals, helpers, npz_name, wiring, simplifications) -> str:
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
    if simplifications is not None:
        meta += ["", SIMPLIFICATIONS_COMMENT, "SIMPLIFICATIONS = " + _records(simplifications)]
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
    return "\n\n\n".join(parts) + "\n"
