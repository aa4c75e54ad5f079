"""Pruned inputs replaced by their mean contribution on the probe data (issue #22).

A top-k circuit keeps a neuron's strongest inputs and drops the rest. Written as zero, a dropped input pulls
the neuron's pre-activation towards its bias alone: on a real net the many small inputs top-k drops add up to
a large offset, and the emitted neuron is shifted by it (R² far below zero, and not monotonic in k; the issue
reports an EfficientNet block-13 neuron at top-8: R² -4.0 zero-filled, 0.72 mean-filled). So each emitted neuron
with dropped inputs gets one constant, added to its bias before its nonlinearity: the mean over the probe
images of the summed contribution of its dropped inputs. An input's contribution is its kernel applied to
the model's real activation of the source, placed as the model's conv places it (after the real max pool
where the path starts with one): the very term the emitted code would add had the input been kept. The mean
over images is taken first (the term is linear in the source), one kernel tap at a time, so every input's
mean is known and a collapsed form that reads other inputs gets its own constant. A complete circuit drops
nothing and gets nothing.

Why a mean map per position, not one scalar per neuron: measured, the map is better by a margin, and the
scalar is not enough to fix the zero fill's worst cases. Depth-1 circuits, means taken on
``toyworld:256:12345``, R² on held-out ``toyworld:512:7`` averaged over the layer's live neurons:

==========================================  ===  ========  ======  ========
layer (live neurons, nonlinearity)          k    zero      scalar  map
==========================================  ===  ========  ======  ========
``zoo:plain-cnn-s0`` conv3 (27, ReLU)       1    -0.99     0.04    0.27
                                            4    0.06      0.35    0.46
                                            8    0.43      0.54    0.62
``zoo:plain-cnn-s0`` conv2 (28, ReLU)       4    -0.49     0.36    0.46
EfficientNetLike twin head_act (5, SiLU)    1    -5325     0.04    0.64
                                            2    -2679     0.21    0.73
==========================================  ===  ========  ======  ========

A scalar only shifts the neuron; the map also says where the dropped inputs push it: at the border, where
zero padding cuts their kernels, and where the images put things (toy-world objects sit near the middle).
The border alone (each input's overall mean placed through its cut kernel) closes part of the gap on conv3
(k=8: 0.56) and none of it on the EfficientNet twin. The map costs an array per neuron: inline up to
``inline_limit`` numbers, else in the module's ``.npz``, like a kernel; the docstring gives its mean and
range. A dense neuron has one position: its constant is a number.

What the mean does not promise: with a nonlinearity, f(x + mean) is not the mean of f(x + dropped), so a
ReLU neuron whose kept inputs explain little can sit below its threshold where the model's fires (conv3 of
``zoo:plain-cnn-s0`` at top-1: the map beats zero fill for half the neurons, and by far on average), and in a
deeper circuit the kept inputs are themselves emitted neurons, lower on average than the model's, so the
shortfall adds up (``conv3:7`` at depth 2, top-8: R² 0.29 mean-filled, 0.70 zero-filled, where the two
errors cancel; over conv3 at depth 2, top-8: 0.39 against 0.28 on average, 0.29 against 0.33 median). R²
need not rise with every k either: top-k ranks by weight, and inputs that cancel each other can be split.
For a neuron without a nonlinearity the mean is the least-squares constant on the probe data: never worse
than zero there.

Hence the default of ``compile_circuit`` (and ``extract --emit``), ``dropped="best"`` (:func:`best_fill`):
each neuron gets the rule it fits better under, measured in the whole circuit on the probe data. On
held-out images it beats both rules on average and in median (docs/compile.md: conv3 of
``zoo:plain-cnn-s0`` at depth 2, top-8, 0.37 against 0.30 mean-filled and 0.27 zero-filled).

    means = dropped_means(circuit, model, data, data_spec="toyworld:256:12345")
    emit(circuit, dropped=means)            # or compile_circuit(..., dropped="mean" | "best" | "zero")
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from circuits import arguments
from circuits.circuit import as_circuit
from circuits.errors import UsageError

RULES = ("best", "mean", "zero")


@dataclass
class _Inputs:
    """One neuron's inputs from one kernel set, as the means need them: their neuron ids, their source
    channels, their kernels ([inputs, taps]) and the key of the tap means the kernels are dotted with."""

    sources: list[str]
    channels: np.ndarray
    kernels: np.ndarray
    taps: tuple


@dataclass
class DroppedMeans:
    """What the dropped inputs of each circuit neuron contribute on average, on the probe data.

    ``fill(neuron, read)`` is the neuron's constant when its function reads the inputs ``read``: the mean
    over images of the summed contribution of all its other inputs, a map over the neuron's positions
    ([H, W]; a number for a dense neuron), or None where nothing is dropped. Built by
    :func:`dropped_means`, or read back from an emitted module by :func:`read_dropped` (``fixed``: the
    constants as written).
    """

    data: str | None  # the probe-data spec the means were measured on
    inputs: dict[str, list[_Inputs]] = field(default_factory=dict, repr=False)
    taps: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)  # [channels, taps, *positions]
    fixed: dict[str, np.ndarray | float] | None = None
    inline: bool = False  # written as literals whatever their size (they were literals in the code read back)
    left_out: dict[str, tuple] = field(default_factory=dict)  # node -> (R² zero, R² mean): zero fit better

    def fill(self, node: str, read) -> np.ndarray | float | None:
        if self.fixed is not None:
            return self.fixed.get(node)
        if node not in self.inputs or node in self.left_out:
            return None
        read, total, dropped = set(read), 0.0, False
        for part in self.inputs[node]:
            rows = [i for i, s in enumerate(part.sources) if s not in read]
            if rows:
                dropped = True
                taps = self.taps[part.taps][part.channels[rows]]
                total = total + np.einsum("ct,ct...->...", part.kernels[rows], taps)
        if not dropped:
            return None
        return float(total) if np.ndim(total) == 0 else np.asarray(total)


def dropped_means(circuit, model, data, *, activations: dict | None = None, data_spec: str | None = None,
                  device=None) -> DroppedMeans:  # fmt: skip
    """The mean contribution, on ``data``, of every input of every computed neuron of ``circuit``.

    Parameters
    ----------
    circuit : from :func:`circuits.extraction.extract`.
    model : the model it came from (anything :func:`circuits.graph.build_graph` takes).
    data : probe images; ``activations`` ({layer: tensor} on ``data``) is used, and filled, where given.
    data_spec : how ``data`` is named in the emitted module (e.g. ``toyworld:256:12345``).
    device : where the model runs on ``data``; the means are computed on the CPU in float64.

    Returns
    -------
    :class:`DroppedMeans`, for ``emit(circuit, dropped=...)``.
    """
    from circuits.graph import build_graph

    circuit = as_circuit(circuit)
    graph = build_graph(model)
    if circuit.graph.get("weights_sha256") not in (None, graph.weights_hash):
        raise UsageError("the circuit was extracted from different weights than this model's: pass the model it "
                         "came from to measure its dropped inputs")  # fmt: skip
    nodes = [n for n in circuit if circuit.in_degree(n)]
    sets = {n: _kernel_sets(graph, circuit, n) for n in nodes}
    acts = activations if activations is not None else {}
    missing = sorted({ks.source for n in nodes for ks in sets[n]} - set(acts))
    if missing:
        acts.update(graph.run(data, missing, device=device))
    if any(len(acts[ks.source]) == 0 for n in nodes for ks in sets[n]):
        raise UsageError("no probe images: the mean contribution of dropped inputs needs at least one")
    means = DroppedMeans(data_spec)
    for node in nodes:
        channel, parts = circuit.nodes[node]["channel"], []
        for ks in sets[node]:
            key = (circuit.nodes[node]["layer"], ks.source, ks.expanded, bool(ks.entry))
            if key not in means.taps:
                means.taps[key] = _tap_maps(ks, acts[ks.source]).numpy()
            kernels = ks.kernels[channel].double().flatten(1).numpy()  # [source channels, taps]
            live = np.flatnonzero(np.abs(kernels).sum(1))  # a zero kernel is no input at all
            sources = ["{}:{}".format(*graph.resolve(ks.source, int(c))) for c in live]
            parts.append(_Inputs(sources, live, kernels[live], key))
        means.inputs[node] = parts
    return means


def best_fill(circuit, model, data, *, activations=None, data_spec=None, device=None, motifs=None,
              inline_limit: int = 25) -> DroppedMeans:  # fmt: skip
    """:func:`dropped_means`, kept only for the neurons it fits better: the circuit is emitted and measured
    on ``data`` both ways, and a neuron whose R² is higher with its dropped inputs left out keeps them out
    (``left_out[node] = (R² zero, R² mean)``, which its docstring states). Each neuron is judged in the
    whole circuit, so a deep neuron's choice sees its emitted inputs as they are; the final module is
    measured again. Why: the mean is the least-squares constant for a linear neuron, but past a
    nonlinearity ``f(x + mean)`` is not the mean of ``f(x + dropped)``, and in a deep circuit the two
    errors (dropped inputs, emitted inputs that run low) can cancel.
    """
    from circuits.compile.faithfulness import verify
    from circuits.compile.layout import emit

    means = dropped_means(circuit, model, data, activations=activations, data_spec=data_spec, device=device)
    circuit = as_circuit(circuit)
    filled = [n for n in means.inputs if means.fill(n, [s for s in circuit.predecessors(n)]) is not None]
    if not filled:
        return means
    options = {"activations": activations, "device": device}
    with_mean = verify(emit(circuit, motifs=motifs, inline_limit=inline_limit, dropped=means), model, data, **options)
    without = verify(emit(circuit, motifs=motifs, inline_limit=inline_limit), model, data, **options)
    for node in filled:
        zero, mean = (r["neurons"].get(node, {}).get("r2") for r in (without, with_mean))
        if zero is not None and (mean is None or zero > mean):
            means.left_out[node] = (zero, mean)
    return means


def resolve(dropped, circuit, model, data, *, activations=None, data_spec=None, device=None, motifs=None,
            inline_limit: int = 25) -> DroppedMeans | None:  # fmt: skip
    """What a ``dropped=`` argument means: ``"best"`` is :func:`best_fill`, ``"mean"`` measures
    :func:`dropped_means` on ``data`` for every neuron, ``"zero"`` (or None) leaves dropped inputs out, and
    a :class:`DroppedMeans` is used as it is."""
    if dropped is None or isinstance(dropped, DroppedMeans):
        return dropped
    if not isinstance(dropped, str) or dropped not in RULES:
        raise UsageError(f"dropped must be 'best' (each neuron the rule that fits it), 'mean' (replace pruned inputs "
                         f"by their mean contribution) or 'zero', got {arguments.shown(dropped)}")  # fmt: skip
    if dropped == "zero":
        return None
    if dropped == "best":
        return best_fill(circuit, model, data, activations=activations, data_spec=data_spec, device=device,
                         motifs=motifs, inline_limit=inline_limit)  # fmt: skip
    return dropped_means(circuit, model, data, activations=activations, data_spec=data_spec, device=device)


def read_dropped(code: str) -> DroppedMeans | None:
    """The dropped-input constants an emitted module holds (its ``DROPPED`` table and the literals it names),
    so the module can be emitted again from its circuit alone; None for a module without them, or whose
    constants live in an ``.npz``."""
    assigned = {}
    for statement in ast.parse(code).body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            assigned[targets[0].id] = statement.value
    table, left = assigned.get("DROPPED"), assigned.get("DROPPED_LEFT_OUT")
    if not isinstance(table, ast.Dict) and not isinstance(left, ast.Dict):
        return None
    fixed = {}
    try:
        for key, value in zip(table.keys, table.values) if isinstance(table, ast.Dict) else ():
            fixed[ast.literal_eval(key)] = _literal(assigned[value.id])
        data = ast.literal_eval(assigned["DROPPED_DATA"]) if "DROPPED_DATA" in assigned else None
        left_out = ast.literal_eval(left) if isinstance(left, ast.Dict) else {}
    except (AttributeError, KeyError, ValueError):
        return None
    return DroppedMeans(data, fixed=fixed, inline=True, left_out=left_out)


def _literal(node: ast.expr) -> np.ndarray | float:
    """A number, or an ``np.array([...])`` literal, as emit writes them (anything else: ValueError)."""
    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "array" and len(node.args) == 1:
        return np.asarray(ast.literal_eval(node.args[0]), dtype=np.float64)
    return float(ast.literal_eval(node))


def _kernel_sets(graph, circuit, node) -> list:
    """The kernel sets ``node``'s function reads, as extraction traced them: expanded weights from
    ``through`` on the target's step, else direct weights, taken at the pooled map where the circuit's
    geometry says the path starts with a max pool."""
    from circuits import trace

    attrs = circuit.nodes[node]
    through = circuit.graph.get("through") if attrs["depth"] == 0 else None
    if through:
        return list(trace.weights(graph, through, attrs["layer"], expanded=True).kernel_sets)
    sets = list(trace.weights(graph, target=attrs["layer"]).kernel_sets)
    if any("entry" in geometry for geometry in attrs["inputs"].values()):
        pooled = {ks.source: ks for ks in trace.weights(graph, target=attrs["layer"], at_entry=True).kernel_sets}
        sets = [pooled[ks.source] if "entry" in attrs["inputs"].get(ks.source, {}) else ks for ks in sets]
    return sets


def _tap_maps(ks, activation):
    """[source channels, kernel taps, *target positions]: the mean over images of the source value each
    kernel tap reads at each target position (zero where the kernel reaches past the border, as the model's
    padding has it), so an input's mean contribution is its kernel dotted with its row. A dense target has
    no positions: its kernels cover the whole (pooled) map."""
    import torch

    x = activation.double()
    if ks.entry is not None:
        x = _pool(x, ks.entry)
    mean = x.mean(0)
    if ks.position is None:
        return mean.reshape(mean.shape[0], -1)
    taps = int(np.prod(ks.kernels.shape[-2:]))
    basis = torch.eye(taps, dtype=torch.float64).reshape(taps, 1, *ks.kernels.shape[-2:])
    one_tap_each = dataclasses.replace(ks, kernels=basis)  # the model's geometry, one tap at a time
    return one_tap_each.apply(mean.unsqueeze(1))  # the source's channels as the batch


def _pool(x, entry: dict):
    """The max pool a path starts with (``KernelSet.entry``), as the model applies it."""
    import torch.nn.functional as F

    if entry["op"] == "amax":
        return x.amax(dim=(2, 3), keepdim=entry["keepdim"])
    return F.max_pool2d(x, entry["kernel_size"], entry["stride"], entry["padding"], ceil_mode=entry["ceil_mode"])
