"""Write a network's terms as a Python package: one module per layer, one function per neuron.

    files, manifest = package_files(network, kept, dropped, meta)

``files`` maps each file of the package to its bytes (modules, content-hashed ``.npz`` kernels,
``manifest.json``); :func:`circuits.program.package.write_package` puts them on disk in one step. The
manifest is data about every neuron (inputs, strengths, labels) that ``PROGRAM.md`` and ``circuits
verify`` read; no code is made from it.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np

from circuits.compile import nonlinearities
from circuits.compile.naming import identifier, text
from circuits.compile.source import float_literal, quoted_label, wrap_doc
from circuits.program.source import HELPERS, OPS_HEADER, channel_tuple, line, literal, pool_call, term_call

LISTED = 8  # inputs listed in a neuron's docstring
LISTED_IN_MANIFEST = 16  # and in the manifest (the code has every one)
PACKAGE_RESERVED = {"_ops", "run", "logits", "predict", "faithfulness", "np", "LAYERS"}


def package_files(network, kept, dropped: dict, meta: dict, inline_limit: int = 25) -> tuple[dict, dict]:
    """The package's files (name -> bytes) and its manifest (also among the files, as ``manifest.json``)."""
    taken = set(PACKAGE_RESERVED)
    modules = {lt.layer: identifier(None, lt.layer, taken) for lt in network}
    files, helpers, layers = {}, set(), []
    for lt, masks in zip(network, kept):
        code, npz, used, neurons = _layer_module(lt, masks, dropped.get(lt.layer), meta, modules[lt.layer],
                                                 inline_limit)  # fmt: skip
        helpers |= used
        if npz is not None:
            files[npz[0]] = npz[1]
        files[f"{modules[lt.layer]}.py"] = code.encode()
        layers.append({"layer": lt.layer, "module": modules[lt.layer], "kind": lt.kind, "shape": list(lt.shape),
                       "exact": all(t.exact for t in lt.terms),
                       "complete": all(n["kept"] == n["live"] for n in neurons),
                       "notes": sorted({t.note for t in lt.terms if t.note}), "neurons": neurons})  # fmt: skip
    files["_ops.py"] = _ops_module(helpers).encode()
    files["__init__.py"] = _init_module(network, modules, meta).encode()
    lines = sum(len(v.decode().splitlines()) for k, v in files.items() if k.endswith(".py"))
    terms = sum(n["kept"] for layer in layers for n in layer["neurons"])
    manifest = {**{k: v for k, v in meta.items() if k != "roles"}, "layers": layers, "lines": lines, "terms": terms,
                "neurons": sum(len(layer["neurons"]) for layer in layers)}  # fmt: skip
    files["manifest.json"] = json.dumps(manifest, indent=1).encode()
    return files, manifest


def _layer_module(lt, masks, dropped, meta, module, inline_limit):
    """One layer's module source, its .npz (name, bytes) or None, the helpers it calls, its manifest rows."""
    labels = meta.get("labels") or {}
    taken = set(PACKAGE_RESERVED) | {"inputs", "preact", "x", "NEURONS", "ALL", "constants"}
    constants, literals, functions, rows = {}, [], {}, []
    for c in range(lt.shape[0]):
        neuron = f"{lt.layer}:{c}"
        label = labels.get(neuron) and f"{str(labels[neuron])[:48]} {c}"  # the channel survives the cut to 60
        name = identifier(label, f"{lt.layer}_{c}", taken)
        functions[neuron] = name
        if lt.kind == "gate":
            body, doc, inputs = _gate_body(lt, c)
        else:
            body, doc, inputs = _neuron_body(lt, c, masks, dropped, name, constants, literals, labels, inline_limit,
                                             meta)  # fmt: skip
        title = f"{text(neuron)}{quoted_label(labels.get(neuron))}"
        source = [f"def {name}(x):", f'    """{title}: {doc[0]}', *doc[1:], '    """', *body]
        literals.append("\n".join(source))
        roles = (meta.get("roles") or {}).get(neuron, [])
        rows.append({"neuron": neuron, "function": name, "label": labels.get(neuron), **inputs, "motifs": roles})
    npz = (_npz_name(module, constants), _npz_bytes(constants)) if constants else None
    parts = [_inputs_function(lt), *literals, "NEURONS = {\n" + "".join(f"    {n!r}: {f},\n" for n, f in functions.items())
             + "}", _run_function(lt)]  # fmt: skip
    helpers = _helpers_called(parts) | ({"constants"} if constants else set())
    header = [_layer_doc(lt, meta), "", "import numpy as np"]
    if helpers:
        header += ["", f"from ._ops import {', '.join(sorted(helpers))}"]
    if constants:
        header += ["", f'_K = constants(__file__, "{npz[0]}")']
    return "\n".join(header) + "\n\n\n" + "\n\n\n".join(parts) + "\n", npz, helpers, rows


def _neuron_body(lt, c, masks, dropped, name, constants, literals, labels, inline_limit, meta):
    """One neuron's function body, docstring lines and manifest row."""
    body, names, strength = _term_lines(lt, c, masks, name, constants, literals, inline_limit)
    kept = len(strength)
    live = sum(int((t.magnitude[c] > 0).sum()) for t in lt.terms)
    if not body:  # no input left (a dead neuron, or every input dropped): its bias, at every position
        body.append(f"    total = _zeros(x, {tuple(lt.shape[1:])})")
    fill = dropped[c] if dropped is not None and kept < live else None
    expression = "total" + _addend(lt.bias[c], f"{name}_bias", constants)
    if fill is not None:
        expression += _addend(fill, f"{name}_dropped", constants)
    activation = lt.activations[c] if lt.activations else None
    body.append(line("    return ", nonlinearities.call(activation, expression)[0]))
    strongest = np.lexsort((np.arange(kept), -np.abs(strength)))[: max(LISTED, LISTED_IN_MANIFEST)]
    inputs = [(_input_name(names, int(j)), float(strength[j])) for j in strongest]
    total_strength = sum(float(np.abs(t.strength[c]).sum()) for t in lt.terms)
    pruned = 1 - float(np.abs(strength).sum()) / total_strength if total_strength else 0.0
    doc = _neuron_doc(lt, c, name, activation, inputs, kept, live, pruned, fill is not None, constants, labels, meta)
    row = {"inputs": [[n, round(v, 6)] for n, v in inputs[:LISTED_IN_MANIFEST]], "kept": kept, "live": live,
           "pruned_share": round(pruned, 6)}  # fmt: skip
    return body, doc, row


def _term_lines(lt, c, masks, name, constants, literals, inline_limit):
    """The ``total = ...`` lines, one per source layer with kept inputs; the kept channels; their strengths."""
    body, names, strengths = [], [], []
    for i, (term, mask) in enumerate(zip(lt.terms, masks)):
        channels = np.flatnonzero(mask[c])
        if not len(channels):
            continue
        kernel = term.kernels[c, channels]
        if _is_pointwise(term, lt.shape):
            kernel = kernel[:, 0, 0]
        if kernel.size <= inline_limit:
            const = f"{name.upper()}_K{i}"
            comment = _comment(f"{text(term.source)} -> {text(lt.layer)}:{c}")
            literals.append(f"{comment}\n{const} = {literal(kernel, f'{const} = ')}")
        else:
            const = f'_K["{name}_k{i}"]'
            constants[f"{name}_k{i}"] = kernel
        channel_code = channel_tuple(channels.tolist(), term.kernels.shape[1])
        call, _ = term_call(term, f'x["{text(term.source)}"]', channel_code, const, lt.shape)
        body.append(line(f"    total {'=' if not body else '+='} ", call))
        names.append((term.source, channels))
        strengths.append(term.strength[c, channels])
    return body, names, np.concatenate(strengths) if strengths else np.zeros(0)


def _addend(value: np.ndarray, key: str, constants: dict) -> str:
    """`` + number`` for a constant that is the same at every position, else `` + _K[key]`` (a stored map)."""
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    if flat.size and np.ptp(flat) > 1e-12 * max(1.0, float(np.abs(flat).max())):
        constants[key] = value
        return f' + _K["{key}"]'
    number = float(flat[0]) if flat.size else 0.0
    return f" {'-' if number < 0 else '+'} {float_literal(abs(number))}" if number else ""


def _neuron_doc(lt, c, name, activation, inputs, kept, live, pruned, filled, constants, labels, meta) -> list[str]:
    kind = activation["name"] if activation else ("pre-activation" if lt.channel_wide else "linear")
    doc = [f"{kind} of {kept} of {live} inputs." if kept < live else f"{kind} of {kept} inputs."]
    if kept < live:
        where = f'a map per position, _K["{name}_dropped"]' if f"{name}_dropped" in constants else "the last number added"
        what = (f"replaced by their mean contribution on {text(meta.get('dropped_data'))} ({where})"
                if filled else "left out (zero)")  # fmt: skip
        carried = "under 1%" if 0 < pruned < 0.005 else f"{pruned:.0%}"
        doc += ["", wrap_doc(f"The {live - kept} dropped inputs carry {carried} of the input strength; they are {what}.")]
    if f"{name}_bias" in constants:
        doc += ["", wrap_doc(f'Its bias is a map per position, _K["{name}_bias"]: zero padding after a shift (a '
                             "BatchNorm before a padded convolution) changes it at the border.")]  # fmt: skip
    if inputs:
        doc += ["", "    Inputs (signed strength):"]
        doc += [f"      {v:+.4f}  {text(n)}{quoted_label(labels.get(n))}" for n, v in inputs[:LISTED]]
        if kept > LISTED:
            doc.append(f"      ... and {kept - LISTED} more")
    roles = (meta.get("roles") or {}).get(f"{lt.layer}:{c}", [])
    doc += ([""] + [wrap_doc(text(r)) for r in roles]) if roles else []
    doc += [wrap_doc(f"Note: {text(n)}.") for n in sorted({t.note for t in lt.terms if t.note})]
    return doc


def _comment(words: str) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(words, 86, initial_indent="# ", subsequent_indent="# ", break_long_words=False))


def _input_name(names, j: int) -> str:
    """The j-th kept input's neuron id, counting through the terms' kept channels in order."""
    for source, channels in names:
        if j < len(channels):
            return f"{source}:{channels[j]}"
        j -= len(channels)
    raise IndexError(j)


def _is_pointwise(term, shape):
    from circuits.program.source import pointwise

    return pointwise(term, shape)


def _gate_body(lt, c):
    a, b = lt.factors
    body = [f'    return x["{text(a)}"][:, {c}] * x["{text(b)}"][:, {c}]']
    doc = [f"the product of {text(a)}:{c} and {text(b)}:{c} (a multiplicative gate)."]
    return body, doc, {"inputs": [[f"{a}:{c}", None], [f"{b}:{c}", None]], "kept": 2, "live": 2, "pruned_share": 0.0}


def _inputs_function(lt) -> str:
    if lt.kind == "gate":
        reads = [(f, f'acts["{text(f)}"]') for f in lt.factors]
    else:
        reads = []
        for term in lt.terms:
            call = pool_call(f'acts["{text(term.source)}"]', term.pools)
            reads.append((term.source, call))
    rows = "".join(line(f'        "{text(s)}": ', call) + ",\n" for s, call in reads)
    return ('def inputs(acts):\n    """The maps this layer reads, by source layer (max-pooled first where the\n'
            '    model pools them)."""\n    return {\n' + rows + "    }")  # fmt: skip


def _run_function(lt) -> str:
    stack = "np.stack([neuron(x) for neuron in NEURONS.values()], axis=1)"
    if lt.channel_wide:
        return (f'def preact(acts):\n    """The pre-activation [N, C, ...]: the logits where this is the output."""\n'
                f"    x = inputs(acts)\n    return {stack}\n\n\n"
                f'def run(acts):\n    """This layer\'s activation: {lt.channel_wide} across the channels."""\n'
                f"    return {lt.channel_wide}(preact(acts))")  # fmt: skip
    return ('def run(acts):\n    """This layer\'s activation [N, C, ...] from the earlier layers\' (by name)."""\n'
            f"    x = inputs(acts)\n    return {stack}")  # fmt: skip


def _layer_doc(lt, meta) -> str:
    kinds = sorted({a["name"] for a in lt.activations if a}) or (["a product"] if lt.kind == "gate" else ["linear"])
    reads = ", ".join(sorted({t.source for t in lt.terms} | set(lt.factors))) or "nothing"
    first = (f"Layer {text(lt.layer)} of {text(meta.get('model'))}: {lt.shape[0]} neurons ({', '.join(kinds)}), "
             f"reading {reads}.")  # fmt: skip
    lines = [_wrapped(first, ""), "",
             "Each function computes one neuron's map [N, H, W] (or [N] for a dense layer) from",
             "`x`, the maps this layer reads (`inputs(acts)`); `run(acts)` stacks them into the",
             "layer's activation."]  # fmt: skip
    if not all(t.exact for t in lt.terms):
        lines += ["", _wrapped("Not exact: " + "; ".join(sorted({text(t.note) for t in lt.terms if t.note})) + ".", "")]
    return '"""' + "\n".join(lines) + '\n"""'


def _wrapped(words: str, indent: str, width: int = 85) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(words, width, initial_indent=indent, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False))  # fmt: skip


def _ops_module(helpers) -> str:
    names = sorted(h for h in helpers if h not in ("ALL", "constants"))
    parts = [OPS_HEADER.rstrip("\n")]
    parts += [(HELPERS.get(n) or nonlinearities.SOURCE[n]).rstrip("\n") for n in names]
    return "\n\n\n".join(parts) + "\n"


def _helpers_called(sources) -> set[str]:
    """The _ops names a module's code uses (helper names are reserved: no neuron function can take one)."""
    import re

    known = set(nonlinearities.SOURCE) | set(HELPERS) | {"ALL"}
    return {w for x in sources for w in re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", x) if w in known}


def _init_module(network, modules, meta) -> str:
    names = sorted(modules[lt.layer] for lt in network)
    shape = " x ".join(map(str, meta["input_shape"]))
    doc = [
        _wrapped(f"{text(meta.get('model'))} reverse-compiled into a program: {len(network)} layers, one function "
                 "per neuron.", ""),
        "",
        _wrapped(f"Emitted by circuits {text(meta['tool_version'])} from the weights with sha256 "
                 f"{text(meta['weights_sha256'])}; {text(meta['pruning'])}.", ""),
        "Read PROGRAM.md first: every neuron with its inputs, label and measured R².",
        "",
        "    import program",
        f"    program.predict(images)  # numpy images, N x {shape}",
    ]  # fmt: skip
    joined = ", ".join(names)
    local = (f"from . import {joined}" if len(joined) + 14 <= 88 else
             "from . import (\n" + "".join(f"    {n},\n" for n in names) + ")")  # fmt: skip
    body = [
        f"MODEL = {meta.get('model')!r}",
        f"WEIGHTS_SHA256 = {meta['weights_sha256']!r}",
        f"INPUT = {meta['input']!r}",
        f"INPUT_SHAPE = {tuple(meta['input_shape'])!r}",
        "# the layer whose pre-activation (or value, for a linear layer) is the logits",
        f"LOGITS = {meta['logits']!r}",
        "LAYERS = {  # in the order they run",
        *[f"    {lt.layer!r}: {modules[lt.layer]}," for lt in network],
        "}",
    ]
    return ('"""' + "\n".join(doc) + '\n"""\n\nimport json as _json\nfrom pathlib import Path as _Path\n\nimport numpy as np\n\n'
            + local + "\n\n" + "\n".join(body) + "\n\n\n" + "\n\n\n".join(_ENTRY_POINTS) + "\n")  # fmt: skip


_ENTRY_POINTS = [
    '''def run(images, layers=None):
    """Every layer's activation on ``images`` (N x C x H x W), by layer name, the input
    included; ``layers``: stop after the last of these (None: run them all)."""
    acts = {INPUT: np.asarray(images, dtype=np.float64)}
    if acts[INPUT].shape[1:] != INPUT_SHAPE:
        shape = acts[INPUT].shape[1:]
        raise ValueError(f"images of shape {shape}; the program takes {INPUT_SHAPE}")
    last = None if layers is None else max(list(LAYERS).index(name) for name in layers)
    for i, (name, layer) in enumerate(LAYERS.items()):
        if last is not None and i > last:
            break
        acts[name] = layer.run(acts)
    return acts''',
    '''def logits(images):
    """The model's logits on ``images``."""
    acts = run(images)
    layer = LAYERS[LOGITS]
    return layer.preact(acts) if hasattr(layer, "preact") else acts[LOGITS]''',
    '''def predict(images):
    """The class the program gives each image."""
    return logits(images).argmax(axis=1)''',
    '''def faithfulness():
    """What `circuits verify` measured (FAITHFULNESS.json beside this file), or None."""
    path = _Path(__file__).with_name("FAITHFULNESS.json")
    return _json.loads(path.read_text()) if path.exists() else None''',
]


def _npz_name(module: str, constants: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(constants):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(constants[key], dtype=np.float64).tobytes())
    return f"{module}-{digest.hexdigest()[:16]}.npz"


def _npz_bytes(constants: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v, dtype=np.float32) for k, v in constants.items()})
    return buffer.getvalue()
