"""The neuron-graph IR: neuron layers joined by linear paths (definitions: docs/neuron-graph.md).

A *neuron layer* is the model input, the output of a nonlinearity, a multiplicative gate, a channel concat
of neuron layers (an alias whose channels belong to its parts), or a model output. Everything between
two neuron layers is a linear path; ``sources`` lists the layers that feed a layer's pre-activation
through paths with no nonlinearity in between.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from circuits import arguments
from circuits.errors import (
    ModelLoadError,
    UnknownNeuronError,
    UnsupportedOpError,
    UsageError,
    close_matches_hint,
)
from circuits.graph import ops
from circuits.graph.capture import Captured, capture, shape_propagate


@dataclass
class NeuronLayer:
    """One neuron layer. ``node``/``preact`` are FX node names of the activation and of its pre-activation."""

    name: str
    kind: str  # "input" | "activation" | "gate" | "concat" | "output"
    node: str
    shape: tuple[int, ...]  # without batch: (C, H, W) for conv layers, (C,) for dense ones
    preact: str | None = None
    nonlinearity: str | None = None
    sources: list[str] = field(default_factory=list)
    path_ops: list[str] = field(default_factory=list)
    parts: list[tuple[str, int, int]] = field(default_factory=list)  # concat: (layer, start, stop)
    is_output: bool = False

    @property
    def channels(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    def channel_list(self, channels=None) -> list[int]:
        """``channels`` as a list of ints (``None``: every one), each checked to be one of this layer's."""
        if channels is None:
            chosen = list(range(self.channels))
        elif isinstance(channels, (list, tuple, range)):
            chosen = [arguments.integer(c, "a channel") for c in channels]
        else:
            raise UsageError(f"channels must be a list of integers or None (every one), got {arguments.shown(channels)}")
        if not chosen:
            raise UsageError(f"no channels given for layer '{self.name}': pass at least one, or None for every one")
        bad = [c for c in chosen if not 0 <= c < self.channels]
        if bad:
            raise UsageError(f"layer '{self.name}' has channels 0..{self.channels - 1}; {bad[0]} is not one of them")
        return chosen

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "channels": self.channels,
            "spatial": list(self.spatial),
            "nonlinearity": self.nonlinearity,
            "sources": list(self.sources),
            "path_ops": list(self.path_ops),
            "parts": [{"layer": p, "start": a, "stop": b} for p, a, b in self.parts],
            "is_output": self.is_output,
        }


class NeuronGraph:
    """Neuron layers of one model, in topological order, over a private eval-mode FX copy of it."""

    def __init__(self, gm: fx.GraphModule, layers: list[NeuronLayer], input_shape, capture_method: str):
        from circuits.models.loaded import weights_hash

        self.gm = gm
        self.weights_hash = weights_hash(gm)
        self.spec: str | None = None
        self.labels: dict[str, str] = {}
        self.dtype = torch.float32
        self.layers: dict[str, NeuronLayer] = {layer.name: layer for layer in layers}
        self.input_shape = tuple(input_shape)
        self.capture_method = capture_method
        self.nodes: dict[str, fx.Node] = {n.name: n for n in gm.graph.nodes}
        self.modules: dict[str, nn.Module] = dict(gm.named_modules())

    def __repr__(self):
        return f"NeuronGraph({len(self.layers)} layers: {', '.join(self.layers)})"

    def _repr_html_(self) -> str:
        """Jupyter shows what `circuits layers` prints."""
        import html

        from circuits.formatting import layers_table

        return f"<pre>{html.escape(layers_table(self))}</pre>"

    def layer(self, name: str) -> NeuronLayer:
        if not isinstance(name, str):
            raise UnknownNeuronError(f"a layer is named by a string, got {arguments.shown(name)} "
                                     "(`circuits layers MODEL` lists them)")  # fmt: skip
        if name not in self.layers:
            raise UnknownNeuronError(
                f"unknown layer '{name}'{close_matches_hint(name, self.layers)} (`circuits layers MODEL` lists them)"
            )
        return self.layers[name]

    @property
    def input_layer(self) -> str:
        """The name of the model's input layer."""
        return next(name for name, layer in self.layers.items() if layer.kind == "input")

    def neuron(self, spec: str) -> tuple[str, int]:
        """Parse ``LAYER:CHANNEL`` and check it exists; concat aliases resolve to the part that owns it."""
        if not isinstance(spec, str):
            raise UsageError(f"bad neuron: write LAYER:CHANNEL as a string, e.g. 'conv2:5', got {arguments.shown(spec)}")
        layer_name, sep, channel_text = spec.rpartition(":")
        if not sep or not layer_name:
            raise UsageError(f"bad neuron '{spec}': write LAYER:CHANNEL, e.g. conv2:5")
        try:
            channel = int(channel_text)
        except ValueError:
            raise UsageError(f"bad neuron '{spec}': the channel '{channel_text}' is not an integer") from None
        layer = self.layer(layer_name)
        if not 0 <= channel < layer.channels:
            raise UnknownNeuronError(
                f"channel {channel} is out of range for layer '{layer_name}', which has {layer.channels} "
                f"channels (0..{layer.channels - 1})"
            )
        return self.resolve(layer_name, channel)

    def resolve(self, layer_name: str, channel: int) -> tuple[str, int]:
        """Follow concat aliases down to the layer that computes this channel."""
        layer = self.layers[layer_name]
        while layer.kind == "concat":
            for part, start, stop in layer.parts:
                if start <= channel < stop:
                    layer, channel = self.layers[part], channel - start
                    break
        return layer.name, channel

    def targets(self) -> list[NeuronLayer]:
        """Layers that have weights into them (everything but the input, gates and concat aliases)."""
        return [layer for layer in self.layers.values() if layer.preact is not None]

    def run(self, x, layers=None, *, grad: bool = False, device=None, batch_size: int = 256, preact: bool = False):
        """``{layer: activation}`` of ``layers`` on the batch ``x``: see :func:`circuits.graph.run.run`."""
        from circuits.graph.run import run

        return run(self, x, layers, grad=grad, device=device, batch_size=batch_size, preact=preact)

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "capture": self.capture_method,
            "layers": [layer.to_dict() for layer in self.layers.values()],
        }


def _check_finite(module) -> None:
    """NaN or Inf in a weight makes every traced number meaningless: refuse the model, naming the tensor."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelLoadError(f"the model's '{name}' holds {bad} NaN or infinite value(s): every weight, "
                                 "strength and R² would be meaningless; fix or retrain the weights")


def build_graph(model, input_shape: tuple[int, ...] | None = None) -> NeuronGraph:
    """Trace ``model`` (an nn.Module or a LoadedModel) into its neuron graph.

    The model is deep-copied and put in eval mode first: the caller's model and its train/eval mode are
    never touched. ``input_shape`` (C, H, W) comes from the argument, the LoadedModel, or the model's
    ``input_shape`` attribute.
    """
    import copy

    from circuits.models import LoadedModel

    if isinstance(model, NeuronGraph):
        return model
    if input_shape is not None:
        input_shape = arguments.shape(input_shape)
    if isinstance(model, str):
        from circuits.models import load

        model = load(model)
    if isinstance(model, LoadedModel):
        input_shape = input_shape or model.input_shape or getattr(model.module, "input_shape", None)
        module = model.module
    elif isinstance(model, nn.Module):
        module = model
        input_shape = input_shape or getattr(module, "input_shape", None)
    else:
        raise UsageError(f"model must be an nn.Module, a LoadedModel, a NeuronGraph or a spec such as "
                         f"'zoo:plain-cnn', got {arguments.shown(model)}")  # fmt: skip
    input_shape = None if input_shape is None else arguments.shape(input_shape)
    if input_shape is None:
        raise UsageError("the model does not say its input shape: pass --input-shape C,H,W (e.g. 3,32,32)")
    from circuits.models.spec import check_input_shape

    check_input_shape(input_shape)
    _check_finite(module)
    module = copy.deepcopy(module).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    example = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    captured = capture(module, example)
    shape_propagate(captured.gm, example)
    layers = _find_layers(captured)
    graph = NeuronGraph(captured.gm, layers, input_shape, captured.method)
    graph.dtype = dtype
    if isinstance(model, LoadedModel):
        graph.spec, graph.labels = model.spec, dict(model.labels)
        # the model's identity everywhere (provenance, catalog): the traced graph drops parameters forward
        # never reads (a training-only head), which would give the same model a second hash
        graph.weights_hash = model.weights_hash
    return graph


# --------------------------------------------------------------------------------------------------------
# Finding layers


def concat_offset(cat: fx.Node, part: fx.Node) -> int:
    """Where ``part``'s channel 0 sits in the output of the channel concat ``cat``: the channels of the
    parts before it."""
    parts = _tensor_args(cat)
    return sum(p.meta["shape"][1] for p in parts[: parts.index(part)])


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    found = []

    def visit(a):
        if isinstance(a, fx.Node):
            found.append(a)
        elif isinstance(a, (list, tuple)):
            for x in a:
                visit(x)
        elif isinstance(a, dict):
            for x in a.values():
                visit(x)

    visit(node.args)
    visit(node.kwargs)
    return [a for a in found if a.meta.get("shape") is not None]


def _find_layers(captured: Captured) -> list[NeuronLayer]:
    gm = captured.gm
    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder" and n.meta.get("shape") is not None]
    dependent = _input_dependent(nodes, placeholders)

    kinds: dict[str, str] = {}
    for n in placeholders:
        kinds[n.name] = "input"
    for n in nodes:
        if n.name not in dependent or n.op in ("placeholder", "output", "get_attr"):
            continue
        family = ops.family(n, modules)
        if _divides_by_live(n, dependent, modules):
            raise UnsupportedOpError(
                f"unsupported op '{ops.op_name(n, modules)}' at node '{n.name}': it divides by a value computed from "
                "the input (1/x is a nonlinearity the neuron graph does not model) (CONTRIBUTING.md: adding an op)"
            )
        if family.kind == ops.NONLINEAR:
            kinds[n.name] = "activation"
        elif family.gates(n, dependent):
            kinds[n.name] = "gate"
        elif family.kind == ops.UNKNOWN and n.meta.get("returns") != "other":  # sort, max(dim) included
            raise UnsupportedOpError(
                f"unsupported op '{ops.op_name(n, modules)}' at node '{n.name}': {family.why_unsupported} "
                "(CONTRIBUTING.md: adding an op)"
            )
    for n in nodes:  # channel concats of neuron layers are neuron layers too (Inception's mixed4c)
        if n.name in dependent and ops.family(n, modules).concat_dim(n) == 1:
            parts = _tensor_args(n)
            if parts and all(p.name in kinds and kinds[p.name] != "output" for p in parts):
                kinds[n.name] = "concat"

    output_node = next(n for n in nodes if n.op == "output")
    outputs = [a for a in _tensor_args(output_node) if a.name in dependent]
    for n in outputs:
        kinds.setdefault(n.name, "output")

    names = _name_layers([n for n in nodes if n.name in kinds], kinds, captured, modules, len(placeholders))
    layers: dict[str, NeuronLayer] = {}
    for n in nodes:
        if n.name not in kinds:
            continue
        kind = kinds[n.name]
        shape = tuple(n.meta["shape"][1:])
        layer = NeuronLayer(name=names[n.name], kind=kind, node=n.name, shape=shape)
        layer.is_output = n in outputs
        if kind == "activation":
            preact = _tensor_args(n)[0]
            layer.preact = preact.name
            layer.nonlinearity = ops.op_name(n, modules)
            if ops.family(n, modules).marks_output:
                layer.is_output = True
        elif kind == "output":
            layer.preact = n.name
        if kind == "concat":
            start = 0
            for part in _tensor_args(n):
                stop = start + part.meta["shape"][1]
                layer.parts.append((names[part.name], start, stop))
                start = stop
            layer.sources = [p for p, _, _ in layer.parts]
        elif kind == "gate":
            layer.sources, layer.path_ops = _walk_sources(_tensor_args(n), kinds, names, modules)
        elif kind == "output":  # a linear output (logits): its own op is part of the path
            layer.sources, layer.path_ops = _walk_sources(_tensor_args(n), kinds, names, modules)
            layer.path_ops = sorted({*layer.path_ops, ops.op_name(n, modules)})
        elif kind == "activation":
            layer.sources, layer.path_ops = _walk_sources(_tensor_args(n)[:1], kinds, names, modules)
        layers[n.name] = layer
    return list(layers.values())


def _divides_by_live(n: fx.Node, dependent: set[str], modules) -> bool:
    """``a / x`` (or ``torch.div(a, x)``) with ``x`` computed from the input: not a scale but a reciprocal."""
    if ops.op_name(n, modules) not in ("truediv", "div", "div_", "itruediv", "floordiv", "rtruediv"):
        return False
    divisor = n.args[1] if len(n.args) > 1 else n.kwargs.get("other")
    return isinstance(divisor, fx.Node) and divisor.name in dependent


def _input_dependent(nodes, placeholders) -> set[str]:
    dependent = {p.name for p in placeholders}
    for n in nodes:
        if n.op not in ("placeholder", "get_attr") and any(a.name in dependent for a in n.all_input_nodes):
            dependent.add(n.name)
    return dependent


def _walk_sources(starts, kinds, names, modules):
    """Walk back through linear ops from ``starts`` to the neuron layers that feed them.

    Concat aliases are walked through, so sources are always layers that compute their own channels.
    """
    sources: list[str] = []
    path_ops: set[str] = set()
    stack = list(starts)
    seen = set()
    while stack:
        n = stack.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        if n.name in kinds and kinds[n.name] not in ("concat", "output"):
            if names[n.name] not in sources:
                sources.append(names[n.name])
            continue
        if n.op in ("call_module", "call_function", "call_method") and n.meta.get("shape") is not None:
            path_ops.add(ops.family(n, modules).label(n, modules))
        stack.extend(a for a in _tensor_args(n) if a.op != "get_attr")
    return sorted(sources, key=list(names.values()).index), sorted(path_ops)


def _name_layers(layer_nodes, kinds, captured: Captured, modules, n_inputs: int) -> dict[str, str]:
    """Names users can read in ``print(model)``: see CONTRIBUTING.md, "How layers are named"."""
    leaf = captured.leaf_calls
    calls = Counter(qualname for qualname, _ in set(leaf.values()))
    names: dict[str, str] = {}
    used: set[str] = set()
    for n in layer_nodes:
        name = "input" if kinds[n.name] == "input" and n_inputs == 1 else None
        for qualname, mtype in captured.module_outputs.get(n.name, []):
            if qualname and mtype is not nn.Sequential:
                name = name or qualname
                break
        if name is None and n.name in leaf and calls[leaf[n.name][0]] == 1:
            name = leaf[n.name][0]  # a nonlinearity module called once
        if name is None and n.name not in leaf and kinds[n.name] == "activation":
            producer = _tensor_args(n)[0]  # F.relu(self.conv2(x)) is named after conv2
            if producer.name in leaf and calls[leaf[producer.name][0]] == 1 and producer.name not in kinds:
                name = leaf[producer.name][0]
        if name is None:
            name = leaf[n.name][0] if n.name in leaf else n.name
        base, k = name, 1
        while name in used:
            name = f"{base}_{k}"
            k += 1
        used.add(name)
        names[n.name] = name
    return names
