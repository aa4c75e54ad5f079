"""Motif collapses across a whole program, each kept only where measurement allows it.

An equivariant family of a layer (``conv2:0`` and its quarter turns) is written as one function of one
canonical kernel set, turned or mirrored per member; a union neuron (an OR of a left- and a right-facing
case) reads its cases through one shared kernel, added (``sum``) or, where that also holds, maximised
(``max``). Each proposal rewrites the kernels the program computes with, so what it costs is measured
before anything is written: every neuron it changes, run on the model's own activations of the probe
images, must keep its R² within ``tolerance`` of the literal form's. ``circuits verify`` then measures
the whole simplified program end to end.

Only exact transforms collapse (quarter turns of square kernels, mirror images): an interpolated rotation
resamples a small kernel far from the real copy. How a transform maps a layer's *inputs* comes from the
equivariance motifs of the layer it reads (invariant neurons map onto themselves; the image's channels
too), completed by the best one-to-one match by weights: a guess, which the measurement then tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from circuits.compile.collapse import follow
from circuits.program.prune import apply_term

EXACT = ("rotate90", "reflect")
TOLERANCE = 0.01  # a form is kept when every neuron it changes keeps R² >= literal R² - TOLERANCE
BATCH = 64


@dataclass
class FamilyForm:
    """Members of one layer written as one function: member ``k`` reads, through term ``i``, the source
    channels ``inputs[i][k]`` with the canonical kernels ``kernels[i]`` turned (or mirrored) ``k`` times."""

    layer: str
    transform: str  # "rotate90" | "reflect"
    members: list[int]  # channels, in transform order
    inputs: list[list[list[int]]]  # per term, per member: the channels of that term's source it reads
    kernels: list[np.ndarray]  # per term: [slots, *window], in member 0's frame


@dataclass
class CaseForm:
    """A union neuron's cases read through one shared kernel: case ``k`` (a channel of term ``term``'s
    source) through ``transform``^k of ``kernel``; the case terms are added (``sum``) or maximised (``max``)."""

    layer: str
    target: int
    term: int
    transform: str
    cases: list[int]
    kernel: np.ndarray  # [*window], in case 0's frame
    form: str = "sum"


def check_tolerance(tolerance) -> float:
    """``--tolerance``: the R² a collapse may cost, a number at least 0."""
    from circuits import arguments
    from circuits.errors import UsageError

    tolerance = arguments.number(tolerance, "--tolerance")
    if not tolerance >= 0:
        raise UsageError(f"--tolerance is the R² a collapse may cost, at least 0; got {tolerance}")
    return tolerance


def transformed(kernel: np.ndarray, transform: str, k: int) -> np.ndarray:
    """``transform``^k of kernels [..., kh, kw], as the emitted ``_rot90`` / ``_mirror`` compute it."""
    if transform == "rotate90":
        return np.rot90(kernel, k % 4, axes=(-2, -1))
    return kernel[..., ::-1] if k % 2 else kernel


def rewrite(lt, masks, forms) -> tuple[object, list[np.ndarray]]:
    """The layer's terms and masks as ``forms`` compute them: family members' and union cases' kernels
    replaced by the transformed canonical ones, and those inputs kept; a family member's other inputs
    dropped. Kernels of dropped inputs stay the model's (their mean contribution is taken from them)."""
    kernels = [t.kernels.copy() for t in lt.terms]
    masks = [m.copy() for m in masks]
    for form in forms:
        if isinstance(form, FamilyForm):
            for i, (canonical, rows) in enumerate(zip(form.kernels, form.inputs)):
                for k, (member, channels) in enumerate(zip(form.members, rows)):
                    masks[i][member] = False
                    masks[i][member, channels] = True
                    kernels[i][member, channels] = transformed(canonical, form.transform, k)
        else:
            for k, case in enumerate(form.cases):
                masks[form.term][form.target, case] = True
                kernels[form.term][form.target, case] = transformed(form.kernel, form.transform, k)
    terms = [dataclasses.replace(t, kernels=k) for t, k in zip(lt.terms, kernels)]
    return dataclasses.replace(lt, terms=terms), masks


def simplify_program(graph, network, kept, data: torch.Tensor, motifs: list[dict], mean_filled: bool = True,
                     tolerance: float = TOLERANCE, progress=None):  # fmt: skip
    """Try every collapse ``motifs`` suggest; return the rewritten network, its masks, the kept forms by
    layer, and a record of every proposal (kept or not, and why, with the R² it was decided on).

    Forms are tried layer by layer, each on top of those already kept (families first, then unions; a
    union's ``max`` form replaces its ``sum`` form when it also passes)."""
    network, kept = list(network), [list(m) for m in kept]
    index = {lt.layer: i for i, lt in enumerate(network)}
    forms: dict[str, list] = {}
    records: list[dict] = []
    by_layer: dict[str, list] = {}
    for proposal in proposals(network, kept, motifs, graph.input_layer):
        by_layer.setdefault(proposal[0]["layer"], []).append(proposal)
    for name, layer_proposals in by_layer.items():
        i = index[name]
        lt, masks = network[i], kept[i]
        probe = _Probe(graph, lt, data)
        literal = probe.fit(lt, masks, [], mean_filled)
        chosen: list = []
        for record, form in layer_proposals:
            record = {**record, "neuron": None, "literal_r2": None, "collapsed_r2": None, "kept": False}
            records.append(record)
            if form is None:
                continue
            clash = _clash(form, chosen)
            if clash:
                record["reason"] = clash
                continue
            replaced = [f for f in chosen if isinstance(f, CaseForm) and f.target == getattr(form, "target", None)]
            trial = [f for f in chosen if f not in replaced] + [form]
            changed = form.members if isinstance(form, FamilyForm) else [form.target]
            fit = probe.fit(*rewrite(lt, masks, trial), trial, mean_filled, changed)
            verdict = _verdict(changed, literal, fit, tolerance, name)
            record.update(verdict)
            if record["kept"]:
                if isinstance(form, CaseForm) and form.form == "max":
                    for old in records[:-1]:
                        if old["kept"] and old["kind"] == "union" and old["target"] == record["target"]:
                            old.update(kept=False, reason=f"{old['reason']}; superseded by the max form (an OR, as faithful)")
                chosen = trial
        if chosen:
            network[i], kept[i] = rewrite(lt, masks, chosen)
            forms[name] = chosen
        if progress:
            progress()
    return network, kept, forms, records


def _verdict(changed, literal, fit, tolerance, layer) -> dict:
    """Kept when every changed neuron keeps its R² within tolerance; the worst one is reported."""
    worst = None
    for c in changed:
        before, after = literal[c], fit[c]
        if before["r2"] is None:  # constant on the data: the form must not move it
            if after["max_error"] > before["max_error"] + 1e-6:
                return {"neuron": f"{layer}:{c}", "reason": f"{layer}:{c} is constant on the data, but the collapsed "
                        f"form moves it (largest error {after['max_error']:.3g})", "kept": False}  # fmt: skip
            continue
        drop = before["r2"] - (after["r2"] if after["r2"] is not None else -np.inf)
        if worst is None or drop > worst[0]:
            worst = (drop, c, before["r2"], after["r2"])
    if worst is None:
        return {"reason": "no neuron it changes varies on the data: nothing to measure, not kept", "kept": False}
    _, c, before, after = worst
    out = {"neuron": f"{layer}:{c}", "literal_r2": round(before, 6), "collapsed_r2": None if after is None else round(after, 6)}
    if after is not None and after >= before - tolerance:
        return {**out, "kept": True, "reason": f"R² {after:.6f} vs literal {before:.6f} at {layer}:{c} (tolerance {tolerance})"}
    shown = "n/a" if after is None else f"{after:.6f}"
    return {**out, "kept": False, "reason": f"R² {shown} vs literal {before:.6f} at {layer}:{c}: costs more than the "
                                            f"tolerance {tolerance}"}  # fmt: skip


def _clash(form, chosen) -> str | None:
    """Why ``form`` cannot go with the forms already kept: each neuron has one function."""
    families = {m for f in chosen if isinstance(f, FamilyForm) for m in f.members}
    unions = {f.target for f in chosen if isinstance(f, CaseForm)}
    layer = form.layer
    if isinstance(form, FamilyForm):
        taken = [m for m in form.members if m in families or m in unions]
        return f"{layer}:{taken[0]} is already written by a kept form" if taken else None
    if form.target in families:
        return f"{layer}:{form.target} is already written by a kept family"
    if form.form == "max" and form.target not in unions:
        return "tried only when the sum form is kept"
    if form.form == "sum" and form.target in unions:
        return f"{layer}:{form.target} is already written by a kept union form"
    return None


class _Probe:
    """The model's own values on the probe images for one layer: what each term reads, and the layer's
    activation; a form is measured on these, so only its own layer's change is in the number."""

    def __init__(self, graph, lt, data):
        from circuits.graph.run import check_data, node_values

        data = check_data(graph, data)
        starts = {t.start for t in lt.terms}
        self.lt, self.batches = lt, []
        for first in range(0, len(data), BATCH):
            batch = data[first : first + BATCH]
            values = node_values(graph, batch, starts)
            real = graph.run(batch, [lt.layer])[lt.layer].double().numpy()
            reads = [values[t.start][:, t.offset : t.offset + t.kernels.shape[1]].to(torch.float64) for t in lt.terms]
            self.batches.append((reads, real))
        self.count = len(data)

    def fit(self, lt, masks, forms, mean_filled, channels=None) -> dict[int, dict]:
        """Per channel: R² over images and positions against the model, and the largest error."""
        channels = list(range(lt.shape[0])) if channels is None else list(channels)
        maxed = {f.target: f for f in forms if isinstance(f, CaseForm) and f.form == "max"}
        fill = self._fill(lt, masks, channels) if mean_filled else 0.0
        sums = np.zeros((3, len(channels)))  # sum, sum of squares, residual
        n, largest = 0, np.zeros(len(channels))
        for reads, real in self.batches:
            preact = self._preact(lt, masks, channels, reads, maxed) + fill
            emitted = _activate(lt, channels, preact)
            truth = real[:, channels].reshape(len(real), len(channels), -1)
            emitted = emitted.reshape(truth.shape)
            n += truth.shape[0] * truth.shape[2]
            sums += [truth.sum((0, 2)), (truth**2).sum((0, 2)), ((truth - emitted) ** 2).sum((0, 2))]
            largest = np.maximum(largest, np.abs(truth - emitted).max((0, 2)))
        total = sums[1] - sums[0] ** 2 / max(n, 1)
        return {c: {"r2": None if total[j] <= 1e-12 * max(n, 1) else float(1 - sums[2][j] / total[j]),
                    "max_error": float(largest[j])} for j, c in enumerate(channels)}  # fmt: skip

    def _preact(self, lt, masks, channels, reads, maxed) -> np.ndarray:
        out = np.broadcast_to(lt.bias[channels], (len(reads[0]) if reads else 1, len(channels), *lt.shape[1:])).copy()
        for i, (term, mask, x) in enumerate(zip(lt.terms, masks, reads)):
            mask = mask[channels].copy()
            cases = {}
            for j, c in enumerate(channels):
                form = maxed.get(c)
                if form is not None and form.term == i:
                    cases[j] = form.cases
                    mask[j, form.cases] = False
            sub = dataclasses.replace(term, kernels=term.kernels[channels])
            out += apply_term(sub, x, (len(channels), *lt.shape[1:]), mask).numpy()
            for j, chosen in cases.items():
                one = dataclasses.replace(term, kernels=term.kernels[[channels[j]] * len(chosen)])
                picked = np.zeros((len(chosen), term.kernels.shape[1]), dtype=bool)
                picked[np.arange(len(chosen)), chosen] = True
                out[:, j] += apply_term(one, x, (len(chosen), *lt.shape[1:]), picked).numpy().max(1)
        return out

    def _fill(self, lt, masks, channels) -> np.ndarray:
        """The mean over the probe images of what each channel's dropped inputs add (the model's kernels)."""
        total = 0.0
        for reads, _ in self.batches:
            for term, mask, x in zip(lt.terms, masks, reads):
                if not mask[channels].all():
                    sub = dataclasses.replace(term, kernels=term.kernels[channels])
                    total = total + apply_term(sub, x, (len(channels), *lt.shape[1:]), ~mask[channels]).numpy().sum(0)
        return total / self.count


def _activate(lt, channels, preact: np.ndarray) -> np.ndarray:
    """Each channel's nonlinearity applied with the numpy source the package itself is written with."""
    from circuits.compile import nonlinearities

    out = np.empty_like(preact)
    for j, c in enumerate(channels):
        activation = lt.activations[c] if lt.activations else None
        code, helper = nonlinearities.call(activation, "total")
        scope = {"np": np}
        if helper:
            exec(nonlinearities.SOURCE[helper], scope)  # the package's own helper source, not user text
        out[:, j] = eval(code, scope, {"total": preact[:, j]})
    return out


# -- proposals ---------------------------------------------------------------------------------------------


def proposals(network, kept, motifs: list[dict], image: str | None = None) -> list[tuple[dict, FamilyForm | CaseForm | None]]:
    """``(record, form)`` for every collapse the motifs suggest, in the order they are tried: per layer,
    families (larger first, quarter turns before mirrors), then each union's sum and max forms. ``form``
    is None where the proposal cannot be written (``record["reason"]`` says why). ``image``: the model's input
    layer, whose channels every spatial transform maps onto themselves."""
    index = {lt.layer: i for i, lt in enumerate(network)}
    images = _input_maps(network, motifs, image)
    families = [m for m in motifs if m["kind"] == "equivariance" and len(m["members"]) > 1]
    families.sort(key=lambda m: (index.get(_layer(m["members"][0]), -1), -len(m["members"]),
                                 _ORDER.get(m.get("transform"), 9), m["members"]))  # fmt: skip
    out = []
    for m in families:
        layer = _layer(m["members"][0])
        if layer in index:
            i = index[layer]
            out.append(_family(network[i], kept[i], m, images, image))
    for m in motifs:
        layer = _layer(m.get("target") or "")
        if m["kind"] in ("union", "and") and layer in index:
            out += _union(network[index[layer]], m)
    out.sort(key=lambda p: index[p[0]["layer"]])  # stable: families before unions within a layer
    return out


_ORDER = {"rotate90": 0, "reflect": 1}


def _layer(neuron: str) -> str:
    return neuron.rpartition(":")[0]


def _channel(neuron: str) -> int:
    return int(neuron.rpartition(":")[2])


def _input_maps(network, motifs, image=None) -> dict[str, dict[str, dict[int, int]]]:
    """transform -> layer -> {channel: its image}: the channels of the model's input map onto themselves
    (the transform is spatial); a layer's channels map as its equivariance motifs say (chains, cycles,
    invariant neurons), and the channels no motif covers as the best one-to-one match by weights
    (:func:`_weight_map`): a proposal, which measurement then tests."""
    maps = _motif_maps(motifs)
    for transform, layers in maps.items():
        if image is not None:
            layers[image] = _Identity()
        for lt in network:
            layers[lt.layer] = _weight_map(lt, transform, layers, layers.get(lt.layer, {}))
    return maps


class _Identity(dict):
    """The image's channels: each maps onto itself."""

    def get(self, key, default=None):
        return key


def _weight_map(lt, transform, layers, fixed: dict[int, int]) -> dict[int, int]:
    """``fixed`` (the motifs' pairs), completed one to one: each other channel of ``lt`` is mapped to the
    channel whose kernels best match its own transformed and read from the transformed inputs (the
    assignment that maximises the summed cosine). Only ``fixed`` where the layer is not all windows or a
    source's map is unknown."""
    from circuits.compare.assignment import hungarian

    if lt.kind == "gate" or not lt.terms or any(not _spatial(t, lt) for t in lt.terms):
        return dict(fixed)
    if transform == "rotate90" and any(t.kernels.shape[-1] != t.kernels.shape[-2] for t in lt.terms):
        return dict(fixed)
    vectors, moved, ok = [], [], np.ones(lt.shape[0], dtype=bool)
    for term in lt.terms:
        source = layers.get(term.source)
        if source is None:
            return dict(fixed)
        kernels = term.kernels
        turned = np.zeros_like(kernels)
        for s in range(kernels.shape[1]):
            partner = source.get(s)
            if partner is None:
                ok &= np.abs(kernels[:, s]).reshape(len(kernels), -1).sum(1) == 0
                continue
            turned[:, partner] += transformed(kernels[:, s], transform, 1)
        vectors.append(kernels.reshape(len(kernels), -1))
        moved.append(turned.reshape(len(kernels), -1))
    vectors, moved = np.concatenate(vectors, 1), np.concatenate(moved, 1)
    norms = np.linalg.norm(vectors, axis=1)
    cosine = (moved @ vectors.T) / np.maximum(np.outer(np.linalg.norm(moved, axis=1), norms), 1e-12)
    cost = -cosine
    for a, b in fixed.items():  # the motifs' pairs are kept as they are
        cost[a, :] = 1e6
        cost[:, b] = np.where(np.arange(len(cost)) == a, -1e6, 1e6)
    rows, cols = hungarian(torch.from_numpy(cost))
    found = {int(r): int(c) for r, c in zip(rows, cols) if ok[r] and norms[r] > 0}
    return {**found, **fixed}


def _motif_maps(motifs) -> dict[str, dict[str, dict[int, int]]]:
    maps: dict[str, dict[str, dict[int, int]]] = {t: {} for t in EXACT}
    for m in motifs:
        if m["kind"] != "equivariance" or m.get("transform") not in EXACT:
            continue
        members = list(m["members"])
        layer_map = maps[m["transform"]].setdefault(_layer(members[0]), {})
        evidence = m.get("evidence") or {}
        if len(members) == 1 and evidence.get("invariant"):
            layer_map[_channel(members[0])] = _channel(members[0])
            continue
        closed = evidence.get("closed") or (m["transform"] == "reflect" and len(members) == 2)
        for a, b in zip(members, members[1:] + (members[:1] if closed else [])):
            layer_map[_channel(a)] = _channel(b)
    return maps


def _spatial(term, lt) -> bool:
    """Whether each input's kernel is a 2-D window the transform turns: a convolution's, or a dense
    neuron's read of a whole map (a flatten)."""
    window = term.kernels.shape[2:]
    return len(window) == 2 and (term.kind == "conv" or len(lt.shape) == 1)


def _family(lt, masks, motif, images, image) -> tuple[dict, FamilyForm | None]:
    members, transform, layer = [_channel(x) for x in motif["members"]], motif.get("transform"), lt.layer
    record = {"kind": "family", "layer": layer, "transform": transform, "members": list(motif["members"]),
              "target": None, "form": "parametrised"}  # fmt: skip

    def refused(reason):
        return {**record, "reason": reason}, None

    if transform not in EXACT:
        return refused(f"'{transform}' resamples the kernels: only exact transforms (rotate90, reflect) collapse; not tried")
    if any(_layer(x) != layer for x in motif["members"]):
        return refused("the members are not all in one layer")
    if lt.kind == "gate" or lt.channel_wide:
        return refused(f"{layer} is a {'gate' if lt.kind == 'gate' else lt.channel_wide}: its neurons are not a family of kernels")
    if any(lt.activations[c] != lt.activations[members[0]] for c in members):
        return refused("the members have different nonlinearities")
    maps = images[transform]
    inputs, kernels = [], []
    for term, mask in zip(lt.terms, masks):
        if not mask[members].any():
            inputs.append([[] for _ in members])
            kernels.append(term.kernels[members[0], :0])
            continue
        if not _spatial(term, lt):
            return refused(f"{term.source} reaches {layer} through a dense map that is not a window: nothing to turn")
        window = term.kernels.shape[2:]
        if transform == "rotate90" and window[0] != window[1]:
            return refused(f"the kernels {term.source} -> {layer} are not square: a quarter turn does not map them")
        mapping = maps.get(term.source)
        if mapping is None:
            return refused(f"how {transform} maps {term.source}'s channels is not known: no equivariance motif of "
                           "that layer covers them (find motifs with include_invariant=True)")  # fmt: skip
        preimage = _Identity() if isinstance(mapping, _Identity) else {b: a for a, b in mapping.items()}
        slots: list[int] = []
        for k, member in enumerate(members):
            for channel in np.flatnonzero(mask[member]):
                slot = follow(preimage, int(channel), k)
                if slot is None:
                    return refused(f"how {transform} maps {term.source}:{channel}, an input of {layer}:{member}, is "
                                   "not known: no equivariance motif of its layer covers it")  # fmt: skip
                if slot not in slots:
                    slots.append(slot)
        slots.sort()
        rows = []
        for k in range(len(members)):
            row = [follow(mapping, s, k) for s in slots]
            if None in row:
                missing = slots[row.index(None)]
                return refused(f"how {transform} maps {term.source}:{missing}'s copies is not known")
            rows.append(row)
        aligned = [transformed(term.kernels[member, rows[k]], transform, -k) for k, member in enumerate(members)]
        inputs.append(rows)
        kernels.append(np.mean(aligned, axis=0))
    return {**record, "reason": None}, FamilyForm(layer, transform, members, inputs, kernels)


def _union(lt, motif) -> list[tuple[dict, CaseForm | None]]:
    target, cases, transform = motif["target"], list(motif["members"]), motif.get("transform")
    forms = ("sum",) if motif["kind"] == "and" else ("sum", "max")  # an AND's cases are not an OR: no max form
    records = [{"kind": "union", "layer": lt.layer, "transform": transform, "members": cases, "target": target,
                "form": form, "reason": None} for form in forms]  # fmt: skip

    def refused(reason):
        return [({**records[0], "reason": reason}, None)]

    if transform not in EXACT:
        return refused(f"'{transform}' is not an exact transform: not tried")
    source = {_layer(c) for c in cases}
    term = next((i for i, t in enumerate(lt.terms) if {t.source} == source), None)
    if term is None:
        return refused(f"the cases are not all read from one layer that {target} reads")
    t = lt.terms[term]
    if lt.kind == "gate" or not _spatial(t, lt):
        return refused(f"{t.source} reaches {lt.layer} through a dense map that is not a window: nothing to turn")
    window = t.kernels.shape[2:]
    if transform == "rotate90" and window[0] != window[1]:
        return refused("a case kernel is not square: a quarter turn does not map it")
    c, channels = _channel(target), [_channel(x) for x in cases]
    shared = np.mean([transformed(t.kernels[c, s], transform, -k) for k, s in enumerate(channels)], axis=0)
    return [(r, CaseForm(lt.layer, c, term, transform, channels, shared, r["form"])) for r in records]
