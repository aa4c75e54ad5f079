"""Nonlinearities: they make neuron layers. One row per function the circuit can name.

A row says which modules and functional names compute it, how to read its exact parameters (slopes,
clip bounds, a PReLU's per-channel weight) and, where reverse compilation supports it, its numpy source.
A row without ``numpy`` still makes a neuron layer; only emitting it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx, nn

from circuits.graph.ops.base import (
    NONLINEAR,
    Identity,
    NotTranslationEquivariant,
    OpFamily,
    Uncomposable,
    op_name,
)


@dataclass(frozen=True)
class Nonlinearity:
    """One nonlinearity as a circuit names it: ``{"name": name, **parameters}``.

    name: the canonical name (None: the op's own name, as for ``threshold``).
    modules: its module classes; ``attributes`` are read from the module, in this order.
    functions: functional/method/aten op names -> the positional parameters after the input.
    defaults: parameters a functional call leaves out.
    numpy: numpy source of ``def NAME(x, ...)`` for emitted modules (None: not emitted).
    """

    name: str | None
    modules: tuple[type, ...] = ()
    attributes: tuple[str, ...] = ()
    functions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    defaults: dict[str, object] = field(default_factory=dict)
    numpy: str | None = None


_ERF = (
    "\n\n"
    "def _erf(x):\n"
    '    """erf to 1.2e-7 (Numerical Recipes erfc), numpy only."""\n'
    "    z = np.abs(x)\n"
    "    t = 1.0 / (1.0 + 0.5 * z)\n"
    "    coefficients = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,\n"
    "                    -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223)\n"
    "    poly = np.zeros_like(t)\n"
    "    for c in coefficients:\n"
    "        poly = poly * t + c\n"
    "    poly = poly - z * z\n"
    "    return np.sign(x) * (1.0 - t * np.exp(poly))\n"
)
_CLIP = ("min_val", "max_val")

ROWS = (
    Nonlinearity("relu", (nn.ReLU,), functions={"relu": (), "relu_": ()},
                 numpy="def relu(x):\n    return np.maximum(x, 0.0)\n"),
    Nonlinearity("hardtanh", (nn.Hardtanh,), _CLIP, {"hardtanh": _CLIP, "hardtanh_": _CLIP}, {"min_val": -1.0, "max_val": 1.0},
                 numpy="def hardtanh(x, min_val, max_val):\n    return np.clip(x, min_val, max_val)\n"),
    Nonlinearity("hardtanh", functions={"relu6": ()}, defaults={"min_val": 0.0, "max_val": 6.0}),  # nn.ReLU6 is a Hardtanh
    Nonlinearity("clamp", functions={"clamp": _CLIP, "clamp_": _CLIP, "clip": _CLIP, "clamp_min": ("min_val",),
                                     "clamp_max": ("max_val",)},
                 numpy="def clamp(x, min_val=None, max_val=None):\n    return np.clip(x, min_val, max_val)\n"),
    Nonlinearity("leaky_relu", (nn.LeakyReLU,), ("negative_slope",),
                 {"leaky_relu": ("negative_slope",), "leaky_relu_": ("negative_slope",)}, {"negative_slope": 0.01},
                 numpy="def leaky_relu(x, negative_slope):\n    return np.where(x >= 0, x, negative_slope * x)\n"),
    Nonlinearity("leaky_relu", (nn.PReLU,)),  # its slope is a per-channel weight: see describe()
    Nonlinearity("elu", (nn.ELU,), ("alpha",), {"elu": ("alpha",), "elu_": ("alpha",)}, {"alpha": 1.0},
                 numpy="def elu(x, alpha):\n    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))\n"),
    Nonlinearity("celu", (nn.CELU,), ("alpha",), {"celu": ("alpha",)}, {"alpha": 1.0}, numpy=(
        "def celu(x, alpha):\n"
        "    negative = alpha * np.expm1(np.minimum(x, 0.0) / alpha)\n"
        "    return np.maximum(x, 0.0) + np.minimum(0.0, negative)\n"
    )),
    Nonlinearity("selu", (nn.SELU,), functions={"selu": ()}, numpy=(
        "def selu(x):\n"
        "    alpha, scale = 1.6732632423543772, 1.0507009873554805\n"
        "    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))\n"
    )),
    Nonlinearity("gelu", (nn.GELU,), ("approximate",), {"gelu": ()}, numpy=(
        "def gelu(x, approximate='none'):\n"
        "    if approximate == 'tanh':\n"
        "        return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))\n"
        "    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))\n" + _ERF
    )),
    Nonlinearity("silu", (nn.SiLU,), functions={"silu": (), "silu_": ()},
                 numpy="def silu(x):\n    return x * 0.5 * (1.0 + np.tanh(0.5 * x))\n"),
    Nonlinearity("mish", (nn.Mish,), functions={"mish": ()},
                 numpy="def mish(x):\n    return x * np.tanh(np.logaddexp(0.0, x))\n"),
    Nonlinearity("hardswish", (nn.Hardswish,), functions={"hardswish": ()},
                 numpy="def hardswish(x):\n    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0\n"),
    Nonlinearity("hardsigmoid", (nn.Hardsigmoid,), functions={"hardsigmoid": ()},
                 numpy="def hardsigmoid(x):\n    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)\n"),
    Nonlinearity("sigmoid", (nn.Sigmoid,), functions={"sigmoid": (), "sigmoid_": ()},
                 numpy="def sigmoid(x):\n    return 0.5 * (1.0 + np.tanh(0.5 * x))\n"),
    Nonlinearity("tanh", (nn.Tanh,), functions={"tanh": (), "tanh_": ()}, numpy="def tanh(x):\n    return np.tanh(x)\n"),
    Nonlinearity("softplus", (nn.Softplus,), ("beta", "threshold"), {"softplus": ("beta", "threshold")},
                 {"beta": 1.0, "threshold": 20.0}, numpy=(
        "def softplus(x, beta=1.0, threshold=20.0):\n"
        "    smooth = np.log1p(np.exp(np.minimum(beta * x, threshold))) / beta\n"
        "    return np.where(beta * x > threshold, x, smooth)\n"
    )),
    Nonlinearity("softsign", (nn.Softsign,), functions={"softsign": ()},
                 numpy="def softsign(x):\n    return x / (1.0 + np.abs(x))\n"),
    Nonlinearity("logsigmoid", (nn.LogSigmoid,), functions={"logsigmoid": ()},
                 numpy="def logsigmoid(x):\n    return -np.logaddexp(0.0, -x)\n"),
    Nonlinearity(None, (nn.RReLU, nn.Threshold, nn.Tanhshrink),
                 functions={"prelu": (), "_prelu_kernel": (), "rrelu": (), "threshold": (), "tanhshrink": (),
                            "log_sigmoid": ()}),  # fmt: skip
)  # fmt: skip
# Softmax-like: a nonlinearity over all channels; it marks the model's output and is never emitted.
SOFTMAX_ROWS = (
    Nonlinearity("softmax", (nn.Softmax,), functions={"softmax": (), "_softmax": ()}),
    Nonlinearity("log_softmax", (nn.LogSoftmax,), functions={"log_softmax": (), "_log_softmax": ()}),
    Nonlinearity(None, (nn.Softmax2d,)),
)


class Nonlinearities(OpFamily):
    """Elementwise (or, for softmax, channel-wide) functions: the identity once linearised."""

    kind = NONLINEAR

    def __init__(self, name: str, rows, marks_output: bool = False):
        super().__init__(name, [m for r in rows for m in r.modules], [f for r in rows for f in r.functions])
        self.rows = rows
        self.marks_output = marks_output

    def evaluate(self, n, args, kwargs, modules, *, linearise, positive, on_data):
        if linearise or positive:
            return args[0]
        return super().evaluate(n, args, kwargs, modules, linearise=linearise, positive=positive, on_data=on_data)

    def evaluate_valid(self, n, args, kwargs, modules, *, linearise):
        if not linearise:
            raise NotTranslationEquivariant(n.name)
        return args[0]

    def step(self, n, modules, *, linearise):
        if not linearise:
            raise Uncomposable(n.name)
        return Identity()

    def describe(self, n: fx.Node, modules, channel: int) -> dict:
        """What the node computes for one channel: ``{"name": "leaky_relu", "negative_slope": 0.1}``."""
        if n.op == "call_module":
            return _from_module(self.rows, modules[n.target], channel)
        return _from_call(self.rows, n, op_name(n, modules))


def _from_module(rows, m: nn.Module, channel: int) -> dict:
    if isinstance(m, nn.PReLU):
        w = m.weight.detach().flatten()
        return {"name": "leaky_relu", "negative_slope": float(w[channel] if w.numel() > 1 else w[0])}
    row = next(r for r in rows if isinstance(m, r.modules))
    params = {a: getattr(m, a) for a in row.attributes}
    return {"name": row.name or type(m).__name__.lower(), **{k: v if isinstance(v, str) else float(v) for k, v in params.items()}}


_KEYWORDS = {"negative_slope": "negative_slope", "alpha": "alpha", "beta": "beta", "threshold": "threshold",
             "approximate": "approximate", "min": "min_val", "max": "max_val", "min_val": "min_val",
             "max_val": "max_val"}  # fmt: skip


def _from_call(rows, n: fx.Node, name: str) -> dict:
    row = next(r for r in rows if name in r.functions)
    canonical = row.name or name
    params = dict(row.defaults)
    for key, value in zip(row.functions[name], n.args[1:]):
        params[key] = value
    for key, alias in _KEYWORDS.items():
        if key in n.kwargs:
            params[alias] = n.kwargs[key]
    if canonical == "gelu":
        params.setdefault("approximate", "none")
    return {"name": canonical, **{k: float(v) if isinstance(v, int | float) else v for k, v in params.items() if v is not None}}


NONLINEARITIES = Nonlinearities("nonlinearity", ROWS)
SOFTMAX = Nonlinearities("softmax", SOFTMAX_ROWS, marks_output=True)
FAMILIES = (NONLINEARITIES, SOFTMAX)

