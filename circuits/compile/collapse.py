"""Readability aids: propose collapsed forms of a circuit, and keep one only where measurement allows it.

Issue #8: reverse compilation becomes shorter than the weights when an equivariant family is written as
one parametrised function (``line_0_family(acts, quarter_turns)``, one canonical kernel set turned by
``np.rot90``) and a union as cases sharing one kernel (``w * np.sum(cases)`` or ``np.max(cases)``).
Each proposal is emitted, run on the model's real activations (:func:`circuits.compile.verify`) and kept
only when every neuron it changes keeps its R² within ``tolerance`` of the literal form's. The module
records what was tried, and what it cost, in ``SIMPLIFICATIONS``.

Only exact transforms collapse (reflections and quarter turns of square kernels): an interpolated rotation
resamples a small kernel far from the real copy (a 5x5 line kernel turned by 22.5° reaches R² ~0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from circuits.compile.faithfulness import verify
from circuits.compile.forms import FamilyForm, UnionForm
from circuits.compile.layout import EmittedModule, emit
from circuits.compile.source import kernel_inputs

EXACT = ("rotate90", "reflect")
TOLERANCE = 0.01


@dataclass
class Simplified:
    """The module with the kept forms, what was tried, and the faithfulness of both forms."""

    module: EmittedModule
    simplifications: list[dict]
    report: dict  # verify() of ``module``
    literal: dict  # verify() of the literal module

    @property
    def kept(self) -> list[dict]:
        return [s for s in self.simplifications if s["kept"]]


@dataclass
class _Proposal:
    record: dict  # kind, transform, members, target, form
    form: FamilyForm | UnionForm | None = None
    reason: str | None = None  # why it cannot be written, when form is None


def simplify(circuit: nx.DiGraph, motifs: list, graph, data, activations: dict | None = None,
             tolerance: float = TOLERANCE, inline_limit: int = 25, device=None, dropped="best",
             data_spec: str | None = None) -> Simplified:  # fmt: skip
    """Emit ``circuit`` literally, then try each family and union collapse that ``motifs`` suggest.

    Parameters
    ----------
    circuit : from :func:`circuits.extraction.extract`.
    motifs : :class:`~circuits.motifs.Motif` records or their dicts (``circuits motifs --json``);
        ``equivariance`` motifs propose families, ``union`` motifs propose case forms, and equivariance
        motifs of a family's input layer say how the transform maps its inputs.
    graph : the model (anything :func:`circuits.graph.build_graph` takes) the circuit came from.
    data : probe images; ``activations`` ({layer: tensor} on ``data``) may be passed to save a pass.
    tolerance : a form is kept when every neuron it changes has R² >= literal R² - tolerance.
    device : where the model runs on ``data`` (when ``activations`` do not cover the circuit's layers).
    dropped : ``"mean"`` replaces each neuron's pruned inputs by their mean contribution on ``data`` (named
        ``data_spec`` in the module), in every form tried; ``"zero"`` leaves them out
        (:mod:`circuits.compile.dropped`).

    Forms are tried one at a time on top of those already kept (families first, then unions; a union's
    ``max`` form replaces its ``sum`` form when it also passes), so the final module as a whole is within
    the tolerance, neuron by neuron.
    """
    from circuits.compile.dropped import resolve
    from circuits.graph import build_graph

    motifs = [m.to_dict() if hasattr(m, "to_dict") else dict(m) for m in motifs]
    graph = build_graph(graph)
    layers = sorted({a["layer"] for _, a in circuit.nodes(data=True)})
    acts = dict(activations or {})
    missing = [layer for layer in layers if layer not in acts]
    if missing:
        acts.update(graph.run(data, missing, device=device))
    means = resolve(dropped, circuit, graph, data, activations=acts, data_spec=data_spec, device=device,
                    motifs=_shown(motifs), inline_limit=inline_limit)  # fmt: skip

    def measure(forms):
        return _measure(circuit, motifs, forms, graph, data, acts, inline_limit, means)

    literal = current = measure([])
    kept: list = []
    records: list[dict] = []
    for proposal in proposals(circuit, motifs):
        record = {**proposal.record, "literal_r2": None, "collapsed_r2": None, "neuron": None, "kept": False}
        records.append(record)
        form = proposal.form
        if form is None:
            record["reason"] = proposal.reason
            continue
        clash = _clash(form, kept)
        if clash:
            record["reason"] = clash
            continue
        replaced = [f for f in kept if isinstance(f, UnionForm) and f.target == getattr(form, "target", None)]
        trial = [f for f in kept if f not in replaced] + [form]
        report = measure(trial)
        neuron, before, after = _worst(circuit, form, literal, report)
        record.update(literal_r2=_round(before), collapsed_r2=_round(after), neuron=neuron)
        woken = _woken(circuit, form, literal, report)
        if woken:
            record["reason"] = woken
        elif neuron is None:
            record["reason"] = "no neuron it changes varies on the data: nothing to measure, not kept"
        elif after is not None and after >= before - tolerance:
            record.update(kept=True, reason=f"R² {after:.6f} vs literal {before:.6f} at {neuron} "
                                            f"(tolerance {tolerance})")  # fmt: skip
            for old in records[:-1] if record["form"] == "max" else []:
                if old["kept"] and old["kind"] == "union" and old["target"] == record["target"]:
                    old.update(kept=False, reason=f"{old['reason']}; superseded by the max form (an OR, as faithful)")
            kept, current = trial, report
        else:
            shown = "n/a" if after is None else f"{after:.6f}"
            record["reason"] = (f"R² {shown} vs literal {before:.6f} at {neuron}: costs more than the "
                                f"tolerance {tolerance}")  # fmt: skip
    module = emit(circuit, _shown(motifs), inline_limit=inline_limit, forms=kept, simplifications=records,
                  dropped=means)  # fmt: skip
    return Simplified(module=module, simplifications=records, report=current, literal=literal)


def _measure(circuit, motifs, forms, graph, data, acts, inline_limit, dropped=None) -> dict:
    """verify() of the module written with ``forms``, in memory."""
    module = emit(circuit, _shown(motifs), inline_limit=inline_limit, forms=forms, simplifications=[], dropped=dropped)
    return verify(module, graph, data, activations=acts)


def _shown(motifs: list[dict]) -> list[dict]:
    """The motifs worth a line in a docstring: not the invariant neurons (they only map inputs)."""
    return [m for m in motifs if not (m.get("evidence") or {}).get("invariant")]


def _worst(circuit, form, literal: dict, report: dict):
    """The changed neuron (the form's own, and everything downstream) whose R² drops the most."""
    worst = None
    for node in sorted(_changed(circuit, form)):
        before, after = literal["neurons"][node]["r2"], report["neurons"][node]["r2"]
        if before is None:
            continue
        drop = before - (after if after is not None else -np.inf)
        if worst is None or drop > worst[0]:
            worst = (drop, node, before, after)
    return (None, None, None) if worst is None else worst[1:]


def _woken(circuit, form, literal: dict, report: dict, atol: float = 1e-6) -> str | None:
    """Why the form is refused although R² cannot say: a changed neuron that is constant on the data in the
    literal form (no R²) but moves in the collapsed one."""
    for node in sorted(_changed(circuit, form)):
        if literal["neurons"][node]["r2"] is not None:
            continue
        before, after = literal["neurons"][node]["max_abs_error"], report["neurons"][node]["max_abs_error"]
        if after > before + atol:
            return (f"{node} is constant on the data, but the collapsed form moves it (largest error {after:.3g}, "
                    f"literal {before:.3g})")  # fmt: skip
    return None


def _changed(circuit, form) -> set[str]:
    """The neurons a form rewrites, and everything downstream of them."""
    changed = set(form.members) if isinstance(form, FamilyForm) else {form.target}
    for node in list(changed):
        changed |= nx.descendants(circuit, node)
    return changed


def _clash(form, kept) -> str | None:
    """Why ``form`` cannot go with the forms already kept: each neuron has one function."""
    families = {m: f for f in kept if isinstance(f, FamilyForm) for m in f.members}
    if isinstance(form, FamilyForm):
        taken = [m for m in form.members if m in families]
        unions = [m for m in form.members if any(isinstance(f, UnionForm) and f.target == m for f in kept)]
        if taken or unions:
            return f"{(taken + unions)[0]} is already written by a kept form"
        return None
    if form.target in families:
        return f"{form.target} is already written by a kept family"
    if form.form == "max" and not any(isinstance(f, UnionForm) and f.target == form.target for f in kept):
        return "tried only when the sum form is kept"
    return None


# -- proposals ---------------------------------------------------------------------------------------------


def proposals(circuit: nx.DiGraph, motifs: list[dict]) -> list[_Proposal]:
    """Every collapse the motifs suggest for this circuit, in the order they are tried: families (larger
    first, quarter turns before reflections), then each union's sum and max forms."""
    families = [m for m in motifs if m["kind"] == "equivariance" and len(m["members"]) > 1
                and all(x in circuit for x in m["members"])]  # fmt: skip
    families.sort(key=lambda m: (-len(m["members"]), _TRANSFORM_ORDER.get(m["transform"], 9), m["members"]))
    out = [_family(circuit, m, motifs) for m in families]
    for m in motifs:
        if m["kind"] in ("union", "and") and m.get("target") in circuit:
            out += _union(circuit, m)
    return out


_TRANSFORM_ORDER = {"rotate90": 0, "reflect": 1, "rotate": 2}


def _family(circuit, motif, motifs) -> _Proposal:
    members, transform = list(motif["members"]), motif["transform"]
    record = {"kind": "family", "transform": transform, "members": members, "target": None, "form": "parametrised"}
    if transform not in EXACT:
        angle = (motif.get("evidence") or {}).get("angle")
        what = f"an interpolated rotation ({angle:g}°)" if angle is not None else f"'{transform}'"
        return _Proposal(record, reason=f"{what} resamples the kernels: only exact transforms "
                                        "(rotate90, reflect) collapse; not tried")  # fmt: skip
    leaves = [m for m in members if circuit.in_degree(m) == 0]
    if leaves:
        return _Proposal(record, reason=f"{leaves[0]} is a leaf of the circuit: its activations are inputs here")
    attrs = [circuit.nodes[m] for m in members]
    if any(a.get("activation") != attrs[0].get("activation") for a in attrs):
        return _Proposal(record, reason="the members have different nonlinearities")
    inputs = [{s: (k, g) for s, _, k, g in kernel_inputs(circuit, m)} for m in members]
    if any(g["position"] is None for row in inputs for _, g in row.values()):
        return _Proposal(record, reason="a dense neuron has no spatial kernel to transform")
    image = _input_map(circuit, motifs, transform)
    preimage = {b: a for a, b in image.items()}
    slots: list[str] = []
    for k, row in enumerate(inputs):
        for source in row:
            s = follow(preimage, source, k)
            if s is None:
                return _Proposal(record, reason=f"how {transform} maps the inputs of {members[k]} ({source}) "
                                                "is not known: no equivariance motif of its layer covers it")  # fmt: skip
            if s not in slots:
                slots.append(s)
    sources = []
    for k in range(len(members)):
        row = []
        for slot in slots:
            s = follow(image, slot, k)
            if s is None:
                return _Proposal(record, reason=f"how {transform} maps {slot}'s copies is not known: "
                                                "no equivariance motif of its layer covers it")  # fmt: skip
            if s not in circuit:
                return _Proposal(record, reason=f"{s}, an input of {members[k]}'s copy, is not in the circuit")
            row.append(s)
        sources.append(row)
    kernels = []
    for i, slot in enumerate(slots):
        geometry = _geometry(circuit, members[0], slot)
        aligned = []
        for k, member in enumerate(members):
            source = sources[k][i]
            if _geometry(circuit, member, source) != geometry:
                return _Proposal(record, reason=f"{source} reaches {member} through a different geometry")
            kernel, _ = inputs[k].get(source, (None, None))
            if kernel is None:  # pruned from this member: a zero kernel
                kernel = np.zeros_like(next(iter(inputs[k].values()))[0])
            if transform == "rotate90" and kernel.shape[0] != kernel.shape[1]:
                return _Proposal(record, reason=f"the kernel {source} -> {member} is not square: a quarter turn "
                                                "does not map it onto itself")  # fmt: skip
            aligned.append(_transform(kernel, transform, -k))
        if len({a.shape for a in aligned}) > 1:
            return _Proposal(record, reason=f"the kernels read from {slot}'s copies differ in shape")
        kernels.append(np.mean(aligned, axis=0))
    biases = [a.get("bias") for a in attrs]
    bias = None if any(b is None for b in biases) else float(np.mean(biases))
    return _Proposal(record, FamilyForm(transform, members, sources, kernels, bias))


def _union(circuit, motif) -> list[_Proposal]:
    target, cases, transform = motif["target"], list(motif["members"]), motif["transform"]
    forms = ("sum",) if motif["kind"] == "and" else ("sum", "max")  # an AND's cases are not an OR: no max form
    records = [{"kind": "union", "transform": transform, "members": cases, "target": target, "form": form}
               for form in forms]  # fmt: skip
    if transform not in EXACT:
        return [_Proposal(records[0], reason=f"'{transform}' is not an exact transform: not tried")]
    inputs = {s: k for s, _, k, _ in kernel_inputs(circuit, target)}
    missing = [c for c in cases if c not in inputs]
    if missing:
        return [_Proposal(records[0], reason=f"case {missing[0]} is not an input of {target} in the circuit")]
    if transform == "rotate90" and any(inputs[c].shape[0] != inputs[c].shape[1] for c in cases):
        return [_Proposal(records[0], reason="a case kernel is not square: a quarter turn does not map it")]
    if len({inputs[c].shape for c in cases}) > 1:
        return [_Proposal(records[0], reason="the case kernels differ in shape")]
    shared = np.mean([_transform(inputs[c], transform, -k) for k, c in enumerate(cases)], axis=0)
    return [_Proposal(r, UnionForm(target, transform, cases, shared, r["form"])) for r in records]


def _input_map(circuit, motifs, transform) -> dict[str, str]:
    """How ``transform`` maps neurons onto each other: from the equivariance motifs (chains, cycles and
    invariant neurons), and channels of the model input onto themselves (the transform is spatial)."""
    image = {n: n for n, a in circuit.nodes(data=True) if a.get("kind") == "input"}
    for m in motifs:
        if m["kind"] != "equivariance" or m["transform"] != transform:
            continue
        members = list(m["members"])
        if len(members) == 1 and (m.get("evidence") or {}).get("invariant"):
            image[members[0]] = members[0]
            continue
        closed = (m.get("evidence") or {}).get("closed")
        for a, b in zip(members, members[1:] + (members[:1] if closed else [])):
            image[a] = b
    return image


def follow(mapping: dict, item, times: int):
    """``item`` mapped ``times`` times, or None where the map does not say (neurons here, channels in
    :mod:`circuits.program.simplify`)."""
    for _ in range(times):
        item = mapping.get(item)
        if item is None:
            return None
    return item


def _geometry(circuit, node, source) -> dict:
    geometry = circuit.nodes[node]["inputs"][circuit.nodes[source]["layer"]]
    return {"geometry": geometry, "shape": circuit.nodes[source]["shape"]}


def _transform(kernel: np.ndarray, transform: str, k: int) -> np.ndarray:
    """``transform``^k of a kernel, as the emitted code applies it (np.rot90 / left-right flip)."""
    if transform == "rotate90":
        return np.rot90(kernel, k % 4)
    return kernel[:, ::-1] if k % 2 else kernel


def _round(value):
    return None if value is None else round(float(value), 6)


def circuit_motifs(model, circuit: nx.DiGraph, data=None) -> list:
    """The equivariance and union motifs among ``circuit``'s layers, from weights (and ``data`` if given):
    what :func:`simplify` needs, found layer by layer rather than over the whole model. Invariant neurons
    are included: they tell how a transform maps a family's inputs."""
    from circuits.motifs import Context, find

    ctx = Context(model, data)
    layers = sorted({a["layer"] for _, a in circuit.nodes(data=True) if a.get("kind") != "input"})
    found = []
    for layer in layers:
        found += find(ctx, "equivariance", layer, include_invariant=True)
        found += find(ctx, "union", layer)
    return found
