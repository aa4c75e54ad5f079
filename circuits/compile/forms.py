"""Collapsed forms an emitted module can use instead of literal functions (proposed and measured by
:mod:`circuits.compile.collapse`): an equivariant family as one parametrised function, a union as its cases.
"""

from __future__ import annotations

import pprint
from dataclasses import dataclass

import numpy as np

from circuits.compile import nonlinearities
from circuits.compile.naming import identifier, text
from circuits.compile.source import (
    float_literal,
    input_term,
    is_pointwise,
    kernel_inputs,
    quoted_label,
    with_bias,
    wrap_call,
    wrap_doc,
)


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


def transformed_kernel(const: str, transform: str, k: int) -> str:
    """Code for ``transform``^k of a kernel constant (np.rot90 turns counter-clockwise, as torch.rot90)."""
    if transform == "rotate90":
        return f"np.rot90({const}, {k % 4})" if k % 4 else const
    return f"np.fliplr({const})" if k % 2 else const


def case_lines(circuit, union, name, out) -> list[str]:
    """The body lines computing a union's case terms and combining them (sum or max)."""
    const = f"{name.upper()}_CASE"
    out.constant(const, union.kernel, f"shared case kernel of {text(union.target)}, in {text(union.cases[0])}'s frame")
    geometries = {s: g for s, _, _, g in kernel_inputs(circuit, union.target)}
    pointwise = union.kernel.size == 1 and all(
        is_pointwise(circuit, c, union.target, geometries[c]) for c in union.cases)  # fmt: skip
    terms = []
    for k, case in enumerate(union.cases):
        kernel = transformed_kernel(const, union.transform, k)
        out.wiring.setdefault(union.target, []).append((case, kernel))
        if pointwise:
            terms.append(f'acts["{text(case)}"]')
            continue
        term, needed = input_term(circuit, case, union.target, kernel, union.kernel, geometries[case], scalar=False)
        out.helpers.update(needed)
        terms.append(term)
    combine = "np.max(cases, axis=0)" if union.form == "max" else "np.sum(cases, axis=0)"
    weight = f"{float_literal(union.kernel.reshape(-1)[0])} * " if pointwise else ""
    lines = [f"    cases = [{', '.join(terms)}]"]
    if len(lines[0]) > 88:
        lines = ["    cases = ["] + [wrap_call("        ", t) + "," for t in terms] + ["    ]"]
    return lines + [f"    total = {weight}{combine}"]


def cases_doc(union) -> list[str]:
    how = "the largest case term (an OR)" if union.form == "max" else "the sum of the case terms"
    return [
        f"    Written as cases over {text(union.transform)}: case k reads one shared kernel",
        f"    transformed k times; the cases combine as {how}.",
        "    Measured against the literal form: see SIMPLIFICATIONS.",
    ]


def family_name(circuit, family, taken) -> str:
    """``<first member's label>_family`` (sanitised like every label), else ``<layer>_<channel>_family``."""
    first = family.members[0]
    label = circuit.nodes[first].get("label")
    return identifier(f"{label[:40]}_family" if label else None, f"{first.replace(':', '_')}_family", taken)


def family_function(circuit, family, name, out) -> str:
    """One function for a whole family, parametrised by how many times the transform is applied."""
    first, const = family.members[0], name.upper()
    param = "quarter_turns" if family.transform == "rotate90" else "mirrored"
    static = all(row == family.sources[0] for row in family.sources)  # e.g. every member reads the image
    body = [] if static else [f"    sources = {const}_INPUTS[{'int(mirrored)' if param == 'mirrored' else param}]"]
    placed = []  # (source, kernel, geometry) of each canonical kernel
    for i, kernel in enumerate(family.kernels):
        source = family.sources[0][i]
        out.constant(f"{const}_K{i}", kernel, f"canonical kernel {i}: {text(source)} -> {text(first)}")
        geometry = circuit.nodes[first]["inputs"][circuit.nodes[source]["layer"]]
        placed.append((source, kernel, geometry.get("entry") or geometry))

    def term(i: int, kernel_name: str, src: str) -> str:
        source, kernel, geometry = placed[i]
        code, needed = input_term(circuit, source, first, kernel_name, kernel, geometry, src=src, scalar=False)
        out.helpers.update(needed)
        return code

    move = "np.rot90({}, quarter_turns)" if param == "quarter_turns" else "_mirror({}, mirrored)"
    generic = [term(i, "kernel", "acts[source]") for i in range(len(placed))]
    if not static and len(generic) > 2 and len(set(generic)) == 1:  # every input is placed alike: one loop
        kernels = ", ".join(f"{const}_K{i}" for i in range(len(generic)))
        body += [wrap_call("    kernels = ", f"({kernels},)"), "    total = 0.0",
                 "    for source, kernel in zip(sources, kernels):", f"        kernel = {move.format('kernel')}",
                 wrap_call("        total = total + ", generic[0])]  # fmt: skip
    else:
        for i, (source, _, _) in enumerate(placed):
            body.append(f"    k{i} = {move.format(f'{const}_K{i}')}")
            src = f'acts["{text(source)}"]' if static else f"acts[sources[{i}]]"
            body.append(wrap_call(f"    total {'=' if i == 0 else '+='} ", term(i, f"k{i}", src)))
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
    filled = any(out.dropped is not None and out.dropped.fill(m, family.sources[k]) is not None
                 for k, m in enumerate(family.members))  # fmt: skip
    applied, helper = nonlinearities.call(activation, with_bias("total", family.bias, "fill" if filled else None))
    if helper:
        out.helpers.add(helper)
    how = "turned `quarter_turns` times (np.rot90)" if param == "quarter_turns" else "mirrored when `mirrored`"
    reads = "" if static else f", reading the inputs {text(family.transform)} maps there"
    doc = [
        f'    """A {text(family.transform)} family: ' + ", ".join(text(m) for m in family.members) + ".",
        "",
        wrap_doc(f"Each member is one canonical kernel set {how}{reads}. The kernels are the members' own, "
                   "aligned by the inverse transform and averaged; the bias is their mean."
                   + (" `fill` is the member's own constant for the inputs it does not read (DROPPED)."
                      if filled else "")),
        '    """',
    ]
    signature = f"def {name}(acts, {param}{', fill=0.0' if filled else ''}):"
    return "\n".join([signature, *doc, *body, f"    return {applied}", ""])


def member_function(circuit, family, function, node, names, out) -> str:
    """A member as a one-liner calling its family's function."""
    k = family.members.index(node)
    title = text(node) + quoted_label(circuit.nodes[node].get("label"))
    if family.transform == "rotate90":
        call, what = f"quarter_turns={k}", f"turned {k} quarter turn{'s' if k != 1 else ''}"
    else:
        call, what = f"mirrored={bool(k)}", "mirrored" if k else "as is"
    for i, source in enumerate(family.sources[k]):
        out.wiring.setdefault(node, []).append((source, transformed_kernel(f"{function.upper()}_K{i}", family.transform, k)))
    fill = out.fill(node, family.sources[k], f"{names[node].upper()}_DROPPED")
    doc = [wrap_doc(f'"""{title}: {function}, {what}."""')]
    if fill:
        doc = [wrap_doc(f'"""{title}: {function}, {what}.'), "", out.fill_doc(node), '    """']
    return "\n".join([
        f"def {names[node]}(acts):",
        *doc,
        wrap_call("    return ", f"{function}(acts, {call}{', fill=' + fill if fill else ''})"),
        "",
    ])  # fmt: skip
