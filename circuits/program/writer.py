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


def package_files(network, kept, dropped: dict, meta: dict, inline_limit: int = 25,
                  forms: dict | None = None) -> tuple[dict, dict]:  # fmt: skip
    """The package's files (name -> bytes) and its manifest (also among the files, as ``manifest.json``).

    forms: per layer, the motif collapses to write (:mod:`circuits.program.simplify`); ``network`` and
    ``kept`` are then the rewritten terms and masks they compute."""
    taken = set(PACKAGE_RESERVED)
    modules = {lt.layer: identifier(None, lt.layer, taken) for lt in network}
    files, helpers, layers, numbers = {}, set(), [], [0]
    for lt, masks in zip(network, kept):
        code, npz, used, neurons = _layer_module(lt, masks, dropped.get(lt.layer), meta, modules[lt.layer],
                                                 inline_limit, (forms or {}).get(lt.layer, []), numbers)  # fmt: skip
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
                "numbers": numbers[0], "neurons": sum(len(layer["neurons"]) for layer in layers)}  # fmt: skip
    files["manifest.json"] = json.dumps(manifest, indent=1).encode()
    return files, manifest


def _layer_module(lt, masks, dropped, meta, module, inline_limit, forms=(), numbers=None):
    """One layer's module source, its .npz (name, bytes) or None, the helpers it calls, its manifest rows."""
    from circuits.program.simplify import FamilyForm

    labels = meta.get("labels") or {}
    taken = set(PACKAGE_RESERVED) | {"inputs", "preact", "x", "NEURONS", "ALL", "constants", "cases", "offset"}
    constants, literals, functions, rows = {}, [], {}, []
    names = {}
    for c in range(lt.shape[0]):
        label = labels.get(f"{lt.layer}:{c}") and f"{str(labels[f'{lt.layer}:{c}'])[:48]} {c}"  # the channel survives the cut to 60
        names[c] = identifier(label, f"{lt.layer}_{c}", taken)
    families = {m: (f, k) for f in forms if isinstance(f, FamilyForm) for k, m in enumerate(f.members)}
    cases = {f.target: f for f in forms if not isinstance(f, FamilyForm)}
    family_names = {}
    for c in range(lt.shape[0]):
        neuron, name = f"{lt.layer}:{c}", names[c]
        functions[neuron] = name
        form = None
        if lt.kind == "gate":
            body, doc, inputs = _gate_body(lt, c)
        else:
            if c in families:
                family, k = families[c]
                if id(family) not in family_names:
                    family_names[id(family)] = identifier(None, f"{names[family.members[0]]}_family", taken)
                    literals.append(_family_function(lt, family, family_names[id(family)], constants, literals,
                                                     inline_limit, meta, names))  # fmt: skip
                form = {"family": family_names[id(family)], "transform": family.transform, "copy": k,
                        "members": [f"{lt.layer}:{m}" for m in family.members]}  # fmt: skip
            elif c in cases:
                form = {"cases": [f"{lt.terms[cases[c].term].source}:{x}" for x in cases[c].cases],
                        "transform": cases[c].transform, "combine": cases[c].form}  # fmt: skip
            body, doc, inputs = _neuron_body(lt, c, masks, dropped, name, constants, literals, labels, inline_limit,
                                             meta, form, cases.get(c))  # fmt: skip
        title = f"{text(neuron)}{quoted_label(labels.get(neuron))}"
        source = [f"def {name}(x):", f'    """{title}: {doc[0]}', *doc[1:], '    """', *body]
        literals.append("\n".join(source))
        roles = (meta.get("roles") or {}).get(neuron, [])
        rows.append({"neuron": neuron, "function": name, "label": labels.get(neuron), **inputs, "motifs": roles,
                     **({"form": form} if form else {})})  # fmt: skip
    if numbers is not None:
        numbers[0] += sum(int(np.size(v)) for v in constants.values()) + sum(_inline_numbers(x) for x in literals)
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


def _neuron_body(lt, c, masks, dropped, name, constants, literals, labels, inline_limit, meta, form=None,
                 case_form=None):  # fmt: skip
    """One neuron's function body, docstring lines and manifest row (``form``: the family or cases it is
    written with, where a motif collapse was kept)."""
    family = bool(form and "family" in form)  # its family's function holds the kernels: nothing of its own to store
    body, names, strength = _term_lines(lt, c, masks, name, {} if family else constants, [] if family else literals,
                                        inline_limit, case_form)  # fmt: skip
    kept = len(strength)
    live = sum(int((t.magnitude[c] > 0).sum()) for t in lt.terms)
    fill = dropped[c] if dropped is not None and kept < live else None
    activation = lt.activations[c] if lt.activations else None
    if family:  # the family's function computes it: only its copy and its offset are its own
        offset = lt.bias[c] + (fill if fill is not None else 0.0)
        number = _addend(offset, f"{name}_offset", constants)
        shown = ("0.0" if not number else number[3:] if number.startswith(" + ") else "-" + number[3:])
        body = [line("    return ", f"{form['family']}(x, {form['copy']}, {shown})")]
    else:
        if not body:  # no input left (a dead neuron, or every input dropped): its bias, at every position
            body.append(f"    total = _zeros(x, {tuple(lt.shape[1:])})")
        expression = "total" + _addend(lt.bias[c], f"{name}_bias", constants)
        if fill is not None:
            expression += _addend(fill, f"{name}_dropped", constants)
        body.append(line("    return ", nonlinearities.call(activation, expression)[0]))
    strongest = np.lexsort((np.arange(kept), -np.abs(strength)))[: max(LISTED, LISTED_IN_MANIFEST)]
    inputs = [(_input_name(names, int(j)), float(strength[j])) for j in strongest]
    total_strength = sum(float(np.abs(t.strength[c]).sum()) for t in lt.terms)
    pruned = 1 - float(np.abs(strength).sum()) / total_strength if total_strength else 0.0
    doc = _neuron_doc(lt, c, name, activation, inputs, kept, live, pruned, fill is not None, constants, labels, meta)
    if form:
        doc += ["", wrap_doc(_form_sentence(form))]
    row = {"inputs": [[n, round(v, 6)] for n, v in inputs[:LISTED_IN_MANIFEST]], "kept": kept, "live": live,
           "pruned_share": round(pruned, 6)}  # fmt: skip
    return body, doc, row


def _term_lines(lt, c, masks, name, constants, literals, inline_limit, case_form=None):
    """The ``total = ...`` lines, one per source layer with kept inputs (and a union's case lines); the kept
    channels; their strengths."""
    body, names, strengths = [], [], []
    for i, (term, mask) in enumerate(zip(lt.terms, masks)):
        channels = np.flatnonzero(mask[c])
        if case_form is not None and case_form.term == i:
            names.append((term.source, np.asarray(case_form.cases)))
            strengths.append(term.strength[c, case_form.cases])
            channels = np.asarray([x for x in channels if x not in case_form.cases], dtype=int)
            body += _case_lines(lt, term, case_form, name, constants, literals, inline_limit, not body)
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


def _stored(kernel, const: str, key: str, constants: dict, literals: list, inline_limit: int, comment: str) -> str:
    """A kernel as code: an inline literal named ``const`` when small, else ``_K[key]`` from the .npz."""
    if kernel.size <= inline_limit:
        literals.append(f"{_comment(comment)}\n{const} = {literal(kernel, f'{const} = ')}")
        return const
    constants[key] = kernel
    return f'_K["{key}"]'


def _family_function(lt, form, name, constants, literals, inline_limit, meta, names) -> str:
    """One function for a whole family: its canonical kernels, turned (or mirrored) per member."""
    param = "quarter_turns" if form.transform == "rotate90" else "mirrored"
    move = "_rot90" if form.transform == "rotate90" else "_mirror"
    const, first = name.upper(), f"{lt.layer}:{form.members[0]}"
    body = []
    for i, (term, rows, kernel) in enumerate(zip(lt.terms, form.inputs, form.kernels)):
        if not rows[0]:
            continue
        pointwise = _is_pointwise(term, lt.shape)
        stored = _stored(kernel[:, 0, 0] if pointwise else kernel, f"{const}_K{i}", f"{name}_k{i}", constants,
                         literals, inline_limit, f"canonical kernels {i}: {text(term.source)} -> {text(first)}")  # fmt: skip
        kernel_code = stored if pointwise else f"{move}({stored}, {param})"
        if all(row == rows[0] for row in rows):  # e.g. every member reads the image's channels
            channel_code = channel_tuple(list(rows[0]), term.kernels.shape[1])
        else:
            table = f"{const}_IN{i}"
            entries = [f"    {channel_tuple(list(row), -1)},  # {param}={k}: {text(lt.layer)}:{m}"
                       for k, (row, m) in enumerate(zip(rows, form.members))]  # fmt: skip
            literals.append(f"# the inputs of each member from {text(term.source)}: {text(form.transform)} maps each input to "
                            f"its partner\n{table} = (\n" + "\n".join(_fit(e) for e in entries) + "\n)")  # fmt: skip
            channel_code = f"{table}[{param}]"
        call, _ = term_call(term, f'x["{text(term.source)}"]', channel_code, kernel_code, lt.shape)
        body.append(line(f"    total {'=' if not body else '+='} ", call))
    if not body:
        body.append(f"    total = _zeros(x, {tuple(lt.shape[1:])})")
    activation = lt.activations[form.members[0]] if lt.activations else None
    body.append(line("    return ", nonlinearities.call(activation, "total + offset")[0]))
    how = "turned counter-clockwise `quarter_turns` times" if param == "quarter_turns" else "mirrored when `mirrored` is 1"
    members = ", ".join(f"{text(lt.layer)}:{m} ({names[m]})" for m in form.members)
    doc = [f'    """A {text(form.transform)} family of {text(lt.layer)}, one function for its members:',
           wrap_doc(f"{members}."), "",
           wrap_doc(f"Member k reads, from each source, the inputs the transform maps member 0's inputs to, through "
                    f"one canonical set of kernels {how}; `offset` is the member's own bias (and the mean of "
                    "what it drops). Kept because every member's R² stays within the tolerance of its literal "
                    "form: see PROGRAM.md."), '    """']  # fmt: skip
    return "\n".join([f"def {name}(x, {param}, offset):", *doc, *body])


def _fit(entry: str) -> str:
    return entry if len(entry) <= 88 else entry.split("  #")[0]


def _case_lines(lt, term, form, name, constants, literals, inline_limit, first) -> list[str]:
    """A union's case terms through one shared kernel, combined by their sum or their maximum (an OR)."""
    pointwise = _is_pointwise(term, lt.shape)
    kernel = form.kernel[None]
    stored = _stored(kernel[:, 0, 0] if pointwise else kernel, f"{name.upper()}_CASE", f"{name}_case", constants,
                     literals, inline_limit, f"shared case kernel of {text(lt.layer)}:{form.target}, in "
                     f"{text(term.source)}:{form.cases[0]}'s frame")  # fmt: skip
    move = "_rot90" if form.transform == "rotate90" else "_mirror"
    calls = []
    for k, case in enumerate(form.cases):
        kernel_code = stored if pointwise or k == 0 else f"{move}({stored}, {k})"
        calls.append(term_call(term, f'x["{text(term.source)}"]', f"[{case}]", kernel_code, lt.shape)[0])
    combine = "np.max(cases, axis=0)" if form.form == "max" else "np.sum(cases, axis=0)"
    return ["    cases = ["] + [line("        ", call) + "," for call in calls] + [
        "    ]", f"    total {'=' if first else '+='} {combine}"]  # fmt: skip


def _form_sentence(form: dict) -> str:
    if "family" in form:
        how = "quarter turns" if form["transform"] == "rotate90" else "mirror images"
        return (f"Written as {form['family']}(x, {form['copy']}, ...): member {form['copy']} of a family of "
                f"{how}, {', '.join(text(m) for m in form['members'])}.")  # fmt: skip
    how = "the largest case term (an OR)" if form["combine"] == "max" else "the sum of the case terms"
    return (f"Its cases {', '.join(text(c) for c in form['cases'])} are read through one shared kernel "
            f"({text(form['transform'])} k times for case k) and combine as {how}.")  # fmt: skip


def _inline_numbers(source: str) -> int:
    """The numbers of the inline kernel constants in one piece of module source."""
    import re

    return sum(len(re.findall(r"-?\d[\d.e+-]*", m)) for m in re.findall(r"np\.array\(\[(.*?)\]\)", source, flags=re.S))


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
