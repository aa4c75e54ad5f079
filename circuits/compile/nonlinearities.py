"""Numpy source for each nonlinearity, emitted only when a circuit uses it."""

from __future__ import annotations

SOURCE = {
    "relu": "def relu(x):\n    return np.maximum(x, 0.0)\n",
    "hardtanh": "def hardtanh(x, min_val, max_val):\n    return np.clip(x, min_val, max_val)\n",
    "clamp": "def clamp(x, min_val=None, max_val=None):\n    return np.clip(x, min_val, max_val)\n",
    "leaky_relu": "def leaky_relu(x, negative_slope):\n    return np.where(x >= 0, x, negative_slope * x)\n",
    "elu": "def elu(x, alpha):\n    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))\n",
    "celu": (
        "def celu(x, alpha):\n"
        "    negative = alpha * np.expm1(np.minimum(x, 0.0) / alpha)\n"
        "    return np.maximum(x, 0.0) + np.minimum(0.0, negative)\n"
    ),
    "selu": (
        "def selu(x):\n"
        "    alpha, scale = 1.6732632423543772, 1.0507009873554805\n"
        "    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))\n"
    ),
    "sigmoid": "def sigmoid(x):\n    return 0.5 * (1.0 + np.tanh(0.5 * x))\n",
    "tanh": "def tanh(x):\n    return np.tanh(x)\n",
    "silu": "def silu(x):\n    return x * 0.5 * (1.0 + np.tanh(0.5 * x))\n",
    "softplus": (
        "def softplus(x, beta=1.0, threshold=20.0):\n"
        "    smooth = np.log1p(np.exp(np.minimum(beta * x, threshold))) / beta\n"
        "    return np.where(beta * x > threshold, x, smooth)\n"
    ),
    "softsign": "def softsign(x):\n    return x / (1.0 + np.abs(x))\n",
    "logsigmoid": "def logsigmoid(x):\n    return -np.logaddexp(0.0, -x)\n",
    "mish": "def mish(x):\n    return x * np.tanh(np.logaddexp(0.0, x))\n",
    "hardswish": "def hardswish(x):\n    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0\n",
    "hardsigmoid": "def hardsigmoid(x):\n    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)\n",
    "gelu": (
        "def gelu(x, approximate='none'):\n"
        "    if approximate == 'tanh':\n"
        "        return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))\n"
        "    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))\n"
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
    ),
}


def call(activation: dict | None, expression: str) -> tuple[str, str | None]:
    """``(code applying the nonlinearity to expression, name of the helper it needs)``."""
    if activation is None:
        return expression, None
    name = activation["name"]
    if name in ("softmax", "log_softmax"):
        return expression, None  # a softmax mixes every channel: the circuit stops at the logit
    if name not in SOURCE:
        raise KeyError(name)
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(activation.items()) if k != "name")
    return f"{name}({expression}{', ' + params if params else ''})", name
