"""What every op family declares, and the behaviour a family gets when it declares nothing more.

An :class:`OpFamily` is a value: the op names and module classes it covers, its *kind* (how the IR
classifies it) and methods for what the rest of the package needs to know about it. Callers ask the
family (``ops.family(node, modules)``); they never match op names themselves.

The defaults say "an ordinary linear op": evaluate it as the model does, refuse it on a receptive-field
crop and in kernel contraction (the Jacobian engine, which handles every path, then takes over).
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.func import functional_call

from circuits.errors import UnsupportedOpError

# Kinds: how the IR classifies a node (CONTRIBUTING.md, "Adding an op").
NONLINEAR = "nonlinear"  # makes a neuron layer (its output is an activation)
LINEAR = "linear"  # joins layers: linear in its input-dependent arguments
MAXPOOL = "maxpool"  # read as average pooling for weights, the real max on data
SCALING = "scaling"  # a product: linear when one side is constant, a gate (a neuron layer) otherwise
META = "meta"  # results are not tensors (sizes, guards): never carries activations
UNKNOWN = "unknown"  # in no family: the IR refuses it


def op_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """A short, stable name for what ``node`` computes (``Conv2d``, ``relu``, ``add``, ``view``).

    The module class for ``call_module``, the function name for ``call_function`` (``torch.relu``,
    ``F.relu``, ``operator.add`` and ``aten.relu.default`` reduce to ``relu``/``add``), the method name for
    ``call_method``.
    """
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    if node.op == "call_method":
        return str(node.target)
    if node.op == "call_function":
        target = node.target
        name = getattr(target, "_opname", None) or getattr(target, "__name__", None) or str(target)
        return name.split(".")[0]
    return node.op


class Zero:
    """A tensor that does not depend on the sources, standing in as zero (its shape is in node.meta).

    Additive constants drop out of the Jacobian of a linear map, so a path holds them at zero.
    """

    def __init__(self, node: fx.Node):
        self.node = node

    def __repr__(self):
        return f"ZERO({self.node.name})"


class NotTranslationEquivariant(Exception):
    """The path has an op that a receptive-field crop cannot evaluate (dense, adaptive, resampling)."""


class Uncomposable(Exception):
    """The op has no reading as a step of kernel contraction; the Jacobian engine takes the path."""


# Steps of kernel contraction (circuits/trace/compose.py interprets them): what linear map an op is,
# in a vocabulary small enough that contraction needs no op names.
@dataclass(frozen=True)
class Identity:
    """The first input, unchanged."""


@dataclass(frozen=True)
class NoPath:
    """Nothing of the source reaches this node (the indices of a max pool)."""


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution with zero padding."""

    weight: torch.Tensor
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int


@dataclass(frozen=True)
class Box:
    """An average over a window: a depthwise convolution with equal taps."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Scale:
    """A constant factor: a number, or one per channel (a tensor)."""

    factor: object


@dataclass(frozen=True)
class Sum:
    """The sum of the first two arguments, the second negated for a difference."""

    negate_second: bool = False


@dataclass(frozen=True)
class Concat:
    """A channel concat of the first argument's tensors."""


class OpFamily:
    """Ops that share one meaning. Subclasses override only what differs from a plain linear op."""

    kind: str = LINEAR
    modules: tuple[type, ...] = ()  # module classes (isinstance: subclasses count)
    functions: frozenset[str] = frozenset()  # op names of functions, methods and aten ops
    marks_output: bool = False  # a nonlinearity over all channels that marks the model's output (softmax)
    crop_commutes: bool = False  # per position or per channel: a receptive-field crop evaluates it as it is
    why_unsupported = "the neuron-graph IR knows only the ops declared in circuits/graph/ops/"  # kind UNKNOWN

    def __init__(self, name: str, modules=(), functions=()):
        self.name = name
        self.modules = tuple(modules)
        self.functions = frozenset(functions)

    def __repr__(self):
        return f"<op family {self.name}>"

    def label(self, n: fx.Node, modules) -> str:
        """How the op is listed in a layer's ``path_ops``."""
        return op_name(n, modules)

    def gates(self, n: fx.Node, live: set[str]) -> bool:
        """Whether the op multiplies two tensors from ``live`` (input-dependent or on-path nodes)."""
        return False

    def concat_dim(self, n: fx.Node) -> int | None:
        """The (non-negative) dimension a concat joins along; None for any other op."""
        return None

    def evaluate(self, n: fx.Node, args, kwargs, modules, *, linearise: bool, positive: bool, on_data: bool):
        """The op on a linear path (``make_path_function``): ZERO-aware, never in place.

        on_data: the path runs on real data (attribution), where it is the model's own.
        """
        args, kwargs = self.resolve_zeros(n, args, kwargs, modules)
        if isinstance(args, Zero):
            return args
        return call_out_of_place(n, args, kwargs, modules, positive)

    def resolve_zeros(self, n: fx.Node, args, kwargs, modules):
        """Apply ZERO semantics: no ZERO leaves the call as is, ZEROs alone give ZERO, a mix is the
        family's to fill (``fill_zeros``)."""
        flat = [a for a in flatten(args) if isinstance(a, (Zero, torch.Tensor))]
        if not any(isinstance(a, Zero) for a in flat):
            return args, kwargs
        live = [a for a in flat if isinstance(a, torch.Tensor)]
        if not live:
            return Zero(n), kwargs
        return self.fill_zeros(n, args, kwargs, live[0], modules)

    def fill_zeros(self, n: fx.Node, args, kwargs, like: torch.Tensor, modules):
        """Some inputs are ZERO and some live: by default that is a gate or an off-path factor, refused."""
        raise UnsupportedOpError(
            f"cannot evaluate '{n.name}' ({op_name(n, modules)}) on a linear path: one of its inputs does not "
            "depend on the source layer (a multiplicative gate?); trace from a layer after it, or give data for "
            "attribution"
        )

    def evaluate_valid(self, n: fx.Node, args, kwargs, modules, *, linearise: bool):
        """The op on a receptive-field crop (``make_path_function(valid=True)``); refused unless the op
        commutes with cropping."""
        if not self.crop_commutes:
            raise NotTranslationEquivariant(n.name)
        return self.evaluate(n, args, kwargs, modules, linearise=linearise, positive=False, on_data=False)

    def step(self, n: fx.Node, modules, *, linearise: bool):
        """The op as a step of kernel contraction (a ``Conv``, ``Scale``, ...); refused by default."""
        raise Uncomposable(n.name)


def call(n: fx.Node, args, kwargs, modules):
    """Run a node's own op as the model does."""
    if n.op == "call_module":
        return modules[n.target](*args, **kwargs)
    if n.op == "call_method":
        return getattr(args[0], str(n.target))(*args[1:], **kwargs)
    return n.target(*args, **kwargs)


_OUT_OF_PLACE = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                 operator.itruediv: operator.truediv}  # fmt: skip


def call_out_of_place(n: fx.Node, args, kwargs, modules, positive: bool = False):
    """Run a node's op without writing into its input (autograd needs the input), and with every
    parameter made ``|p| + 1`` when ``positive`` (the receptive-field surrogate)."""
    if n.op == "call_module":
        module = modules[n.target]
        if positive:
            params = {k: positive_value(v) for k, v in {**dict(module.named_parameters()), **dict(module.named_buffers())}.items()}
            return functional_call(module, params, args, kwargs)
        if getattr(module, "inplace", False):
            clone = copy.copy(module)
            clone.inplace = False
            return clone(*args, **kwargs)
        return module(*args, **kwargs)
    if n.op == "call_method":
        method = str(n.target)
        if method.endswith("_") and not method.endswith("__") and hasattr(torch.Tensor, method[:-1]):
            method = method[:-1]
        return getattr(args[0], method)(*args[1:], **kwargs)
    target = _OUT_OF_PLACE.get(n.target, n.target)
    if kwargs.get("inplace"):
        kwargs = {**kwargs, "inplace": False}
    return target(*args, **kwargs)


def positive_value(t):
    """``|t| + 1`` for a float tensor (no weight cancels), anything else as it is."""
    return t.abs() + 1 if isinstance(t, torch.Tensor) and t.is_floating_point() else t


def flatten(value):
    """The leaves of nested lists, tuples and dicts (an op's arguments)."""
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from flatten(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from flatten(v)
    else:
        yield value


def tensor_nodes(n: fx.Node) -> list[fx.Node]:
    """The node's tensor-valued input nodes, repeats kept (``x * x`` reads ``x`` twice)."""
    return [a for a in flatten((n.args, n.kwargs)) if isinstance(a, fx.Node) and a.meta.get("shape") is not None]


def as_tuple(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


def as_pair(v) -> tuple[int, int]:
    """A 2-D size or stride as a pair: ``3`` -> ``(3, 3)``, ``[2]`` -> ``(2, 2)``."""
    v = as_tuple(v)
    return (int(v[0]), int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))
