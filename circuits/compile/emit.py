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

from circuits.compile import nonlinearities
from circuits.compile.naming import identifier, text

FAITHFULNESS_BEGIN = "# --- faithfulness (rewritten by `circuits verify`) ---"
FAITHFULNESS_END = "# --- end faithfulness ---"

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


def emit(circuit: nx.DiGraph, motifs: list[dict] | None = None, inline_limit: int = 25) -> EmittedModule:
    """Reverse-compile ``circuit`` (from :func:`circuits.extract.extract`) into Python source.

    motifs: motif dicts (``circuits motifs --json`` shape); a neuron's role in them goes in its docstring.
    inline_limit: kernels with at most this many entries are written as literals.
    """
    order = list(nx.lexicographical_topological_sort(circuit, key=lambda n: _sort_key(circuit, n)))
    leaves = [n for n in order if circuit.in_degree(n) == 0]
    taken: set[str] = set()
    names = {n: identifier(circuit.nodes[n].get("label"), n.replace(":", "_"), taken) for n in order}
    roles = _roles(motifs or [], circuit)
    constants: dict[str, np.ndarray] = {}
    literals: list[str] = []
    helpers: set[str] = set()
    functions: list[str] = []
    wiring: dict[str, list[tuple[str, str]]] = {}
    for node in order:
        if node in leaves:
            continue
        functions.append(_function(circuit, node, names, roles, constants, literals, helpers, inline_limit, wiring))
    npz_name = _npz_name(constants) if constants else None
    code = _module(circuit, order, leaves, names, functions, literals, helpers, npz_name, wiring)
    return EmittedModule(code=code, constants=constants, npz_name=npz_name, functions={n: names[n] for n in order})


def _sort_key(circuit, node):
    attrs = circuit.nodes[node]
    return f"{999 - attrs['depth']:03d}|{attrs['layer']}|{attrs['channel']:06d}"


def _function(circuit, node, names, roles, constants, literals, helpers, inline_limit, wiring) -> str:
    attrs = circuit.nodes[node]
    inputs = sorted(circuit.in_edges(node, data=True), key=lambda e: (-abs(e[2]["weight"]), e[0]))
    body, lines = [], []
    for i, (source, _, edge) in enumerate(inputs):
        geometry = attrs["inputs"][circuit.nodes[source]["layer"]]
        entry = geometry.get("entry") if "entry_kernel" in edge else None
        kernel = np.asarray(edge["entry_kernel"] if entry else edge["kernel"], dtype=np.float64)
        const = f"{names[node].upper()}_K{i}"
        if kernel.size <= inline_limit:
            literals.append(f"# {text(source)} -> {text(node)}\n{const} = {_literal(kernel)}")
        else:
            constants[const] = kernel
            literals.append(f"{const} = _CONSTANTS[{const!r}]  # {text(source)} -> {text(node)}, {kernel.shape}")
        wiring.setdefault(node, []).append((source, const))
        term, needed = _term(circuit, source, node, const, kernel, entry or geometry)
        helpers.update(needed)
        body.append(_wrap(f"    total {'=' if i == 0 else '+='} ", term))
        label = circuit.nodes[source].get("label")
        lines.append(f"      {edge['weight']:+.4f}  {text(source)}" + (f"  \"{text(label)}\"" if label else ""))
    bias = attrs.get("bias")
    activation = attrs.get("activation")
    applied, helper = nonlinearities.call(activation, _plus("total", bias))
    if helper:
        helpers.add(helper)
    pruned = attrs.get("pruned_share") or 0.0
    title = text(node) + (f" \"{text(attrs['label'])}\"" if attrs.get("label") else "")
    kind = activation["name"] if activation else "linear"
    doc = [f'    """{title}: {kind} of {len(inputs)} inputs.', ""]
    if pruned:
        doc += [f"    Pruned inputs carry {pruned:.0%} of the input strength.", ""]
    doc += [f"    {text(r)}" for r in roles.get(node, [])]
    doc += (["", "    Inputs (signed strength):"] if roles.get(node) else ["    Inputs (signed strength):"]) + lines
    if bias is None:
        doc.append("    Bias: unknown on an expanded (through) step; taken as 0.")
    doc.append('    """')
    return "\n".join([f"def {names[node]}(acts):", *doc, *body, f"    return {applied}", ""])


def _term(circuit, source, node, const, kernel, geometry):
    """The code for one input's contribution, and the helpers it needs.

    ``geometry`` places the kernel; when it has a ``pool``, the real max pool is applied to the source
    first and the kernel is the one taken at the pooled map (see compute_kernels(at_entry=True)).
    """
    src = f'acts["{text(source)}"]'
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
        if not source_spatial:
            return f"{_number(kernel.reshape(-1)[0])} * {src}", needed
        return f"_dense({src}, {const})", [*needed, "_dense"]
    position, origin = geometry["position"], geometry["origin"]
    stride = geometry["stride"] or [max(1, round(s / t)) for s, t in zip(source_spatial, target_spatial)]
    pad = [p * s - o for p, s, o in zip(position, stride, origin)]
    if kernel.size == 1 and list(stride) == [1, 1] and pad == [0, 0] and source_spatial == target_spatial:
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
        members = [f"{x} \"{circuit.nodes[x].get('label')}\"" if x in circuit and circuit.nodes[x].get("label")
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


def _module(circuit, order, leaves, names, functions, literals, helpers, npz_name, wiring) -> str:
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
