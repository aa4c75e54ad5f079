"""Source text for emitted modules: the numpy helpers they carry, and how one input's term, a kernel literal or
a docstring line is written. Everything a label reaches passes through :mod:`circuits.compile.naming` first.
"""

from __future__ import annotations

import pprint
from dataclasses import dataclass, field

import numpy as np

from circuits.compile.naming import text

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
class Output:
    """What writing the functions adds to the module: constants, literals, helpers and the wiring."""

    inline_limit: int = 25
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    literals: list[str] = field(default_factory=list)
    helpers: set[str] = field(default_factory=set)
    wiring: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    dropped: object = None  # circuits.compile.dropped.DroppedMeans, or None: dropped inputs are zero
    fills: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # neuron -> (constant, value)

    def fill(self, node: str, read, const: str) -> str | None:
        """The name of ``node``'s dropped-input constant ``const`` when its function reads the inputs ``read``
        and leaves some out (the constant is written once), else None: nothing is dropped, or dropped
        inputs are zero."""
        value = self.dropped.fill(node, read) if self.dropped is not None else None
        if value is None:
            return None
        value = np.asarray(value, dtype=np.float32).astype(np.float64)  # the model's precision, like kernels
        if node not in self.fills:
            comment = f"# {text(node)}: its dropped inputs' mean contribution"
            inline = value.size <= self.inline_limit or getattr(self.dropped, "inline", False)  # read back: literals
            if value.ndim == 0:
                self.literals.append(f"{comment}\n{const} = {float_literal(value)}")
            elif inline:
                self.literals.append(f"{comment}, per position\n{const} = {array_literal(value)}")
            else:
                self.constants[const] = value
                self.literals.append(f"{comment}, per position {value.shape}\n{const} = _CONSTANTS[{const!r}]")
        self.fills[node] = (const, value)
        return const

    def fill_doc(self, node: str) -> str:
        """The docstring sentence saying what ``node``'s dropped-input constant is."""
        const, value = self.fills[node]
        if value.ndim == 0:
            what = f"{float(value):+.4g} ({const})"
        else:
            what = (f"{const}, a map per position: mean {value.mean():+.4g}, from {value.min():+.4g} "
                    f"to {value.max():+.4g}")  # fmt: skip
        return wrap_doc(f"Dropped inputs replaced by their mean contribution{self._on()}: {what}.")

    def left_out_doc(self, node: str) -> str:
        """The docstring sentence saying why ``node``'s dropped inputs were left out (``dropped="best"``)."""
        zero, mean = self.dropped.left_out[node]
        shown = "undefined" if mean is None else f"{mean:.3f}"
        return wrap_doc(f"Dropped inputs left out: without them the neuron fits better{self._on()} "
                        f"(R² {zero:.3f}) than with their mean contribution (R² {shown}).")  # fmt: skip

    def _on(self) -> str:
        data = getattr(self.dropped, "data", None)
        return f" on {text(data)}" if data else " on the probe data"

    def constant(self, const: str, kernel: np.ndarray, comment: str) -> None:
        """A kernel as an inline literal when small, else from the .npz beside the module."""
        if kernel.size <= self.inline_limit:
            self.literals.append(f"# {comment}\n{const} = {array_literal(kernel)}")
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


def is_pointwise(circuit, source, node, geometry) -> bool:
    """True when the input is read at the same position only (a 1x1 kernel on a map of the same size)."""
    if geometry.get("pool") or geometry["position"] is None:
        return False
    source_spatial = list(circuit.nodes[source]["shape"][1:])
    target_spatial = circuit.nodes[node]["shape"][1:]
    stride = geometry["stride"] or [max(1, round(s / t)) for s, t in zip(source_spatial, target_spatial)]
    pad = [p * s - o for p, s, o in zip(geometry["position"], stride, geometry["origin"])]
    return list(stride) == [1, 1] and pad == [0, 0] and source_spatial == target_spatial


def input_term(circuit, source, node, const, kernel, geometry, src=None, scalar=True):
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
        source_spatial = [pooled_length(n, k, s, p, pool["ceil_mode"]) for n, k, s, p in
                          zip(source_spatial, pool["kernel_size"], pool["stride"], pool["padding"])]  # fmt: skip
        needed.append("_max_pool")
    if geometry["position"] is None:  # dense target
        if not source_spatial and scalar:
            return f"{float_literal(kernel.reshape(-1)[0])} * {src}", needed
        return f"_dense({src}, {const})", [*needed, "_dense"]
    position, origin = geometry["position"], geometry["origin"]
    stride = geometry["stride"] or [max(1, round(s / t)) for s, t in zip(source_spatial, target_spatial)]
    pad = [p * s - o for p, s, o in zip(position, stride, origin)]
    if scalar and kernel.size == 1 and list(stride) == [1, 1] and pad == [0, 0] and source_spatial == target_spatial:
        return f"{float_literal(kernel.reshape(-1)[0])} * {src}", needed
    return f"_correlate({src}, {const}, {tuple(stride)}, {tuple(pad)}, {tuple(target_spatial)})", [*needed, "_correlate"]


def wrap_call(prefix: str, call: str, width: int = 88) -> str:
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


def wrap_doc(words: str, indent: str = "    ", width: int = 88) -> str:
    """A docstring paragraph wrapped to fit the emitted modules' line length."""
    import textwrap

    return "\n".join(textwrap.wrap(words, width=width, initial_indent=indent, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False))  # fmt: skip


def pooled_length(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Output length of max pooling, as torch computes it."""
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def with_bias(expression: str, bias, fill: str | None = None) -> str:
    """``expression`` plus the bias (a number) and the dropped inputs' constant (code), where there are any."""
    if bias is not None and float(bias) != 0.0:
        expression = f"{expression} {'-' if bias < 0 else '+'} {float_literal(abs(bias))}"
    return f"{expression} + {fill}" if fill else expression


def array_literal(kernel: np.ndarray) -> str:
    """One kernel row per line; float32 values in their shortest exact form (the model's own precision)."""
    rows = ["    [" + ", ".join(float_literal(v) for v in row) + "]," for row in np.atleast_2d(kernel)]
    if len(rows) == 1:
        return f"np.array([{rows[0].strip().rstrip(',')}])"
    return "np.array([\n" + "\n".join(rows) + "\n])"


def float_literal(value) -> str:
    return str(np.float32(value)) if np.isfinite(value) else "float('nan')"


def short_label(label, limit: int = 32) -> str:
    """A label cut to fit a docstring line (cut before escaping, so no escape is split)."""
    label = str(label)
    return label if len(label) <= limit else label[: limit - 3] + "..."


def quoted_label(label) -> str:
    """`` "label"`` for a docstring, or nothing."""
    return f' "{text(short_label(label))}"' if label else ""


def records_literal(records: list[dict], width: int = 86) -> str:
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
