"""The source text of a program package: its numpy helpers, and how a constant or a term is written.

No torch here: the package the writer makes imports numpy and the standard library only. Labels reach the
code through :mod:`circuits.compile.naming` alone, so no label text can become code.
"""

from __future__ import annotations

import numpy as np

from circuits.compile.source import float_literal, wrap_call

OPS_HEADER = '''"""Helpers the program's layers call: numpy only.

Every map is an array [N, C, H, W] (or [N, C] for a dense layer); a neuron's function
returns its own map [N, H, W] (or [N]).
"""

from pathlib import Path

import numpy as np

ALL = slice(None)  # every channel of a source, in order


def constants(module_file, name):
    """A layer's large kernels, from the content-hashed .npz beside its module."""
    with np.load(Path(module_file).with_name(name)) as stored:
        return {key: stored[key].astype(np.float64) for key in stored.files}
'''

HELPERS = {
    "_weighted": '''def _weighted(x, channels, weights):
    """A 1x1 convolution onto a same-size map: the channels of x, weighted, summed."""
    return np.tensordot(weights, x[:, channels], axes=([0], [1]))
''',
    "_conv": '''def _conv(x, channels, kernel, stride, pad, out):
    """The channels of x cross-correlated with kernel [k, kh, kw] and summed, as
    nn.Conv2d does. pad: zero rows and columns before the map (top, left; negative
    crops); out: (height, width).
    """
    (sy, sx), (top, left), (oh, ow) = stride, pad, out
    k, kh, kw = kernel.shape
    x = x[:, channels][:, :, max(-top, 0):, max(-left, 0):]
    top, left = max(top, 0), max(left, 0)
    n, c, h, w = x.shape
    # each tap's weighted sum of the channels, on the whole map, in one product;
    # zero padding commutes with it, so the taps are padded and shifted after
    taps = np.tensordot(kernel.reshape(k, kh * kw), x, axes=([0], [1]))
    height = max((oh - 1) * sy + kh, top + h)
    width = max((ow - 1) * sx + kw, left + w)
    canvas = np.zeros((kh * kw, n, height, width))
    canvas[:, :, top:top + h, left:left + w] = taps
    result = np.zeros((n, oh, ow))
    for dy in range(kh):
        for dx in range(kw):
            rows = slice(dy, dy + (oh - 1) * sy + 1, sy)
            cols = slice(dx, dx + (ow - 1) * sx + 1, sx)
            result += canvas[dy * kw + dx, :, rows, cols]
    return result
''',
    "_linear": '''def _linear(x, channels, kernel):
    """A linear map that is not a convolution (a flatten into a dense layer, an
    upsampling): every value of the channels of x weighted by kernel
    [k, *source map, *target map]."""
    x = x[:, channels]
    return np.tensordot(x, kernel, axes=x.ndim - 1)
''',
    "_max_pool": '''def _max_pool(x, kernel, stride, padding, ceil_mode):
    """Max pooling of maps x [N, C, H, W], as torch's max_pool2d computes it."""
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    n, c, h, w = x.shape

    def length(size, k, s, p):
        out = (size + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
        return out - 1 if ceil_mode and (out - 1) * s >= size + p else out

    oh, ow = length(h, kh, sy, py), length(w, kw, sx, px)
    height = max(h + 2 * py, (oh - 1) * sy + kh)
    width = max(w + 2 * px, (ow - 1) * sx + kw)
    canvas = np.full((n, c, height, width), -np.inf)
    canvas[:, :, py:py + h, px:px + w] = x
    result = np.full((n, c, oh, ow), -np.inf)
    for dy in range(kh):
        for dx in range(kw):
            rows = slice(dy, dy + (oh - 1) * sy + 1, sy)
            cols = slice(dx, dx + (ow - 1) * sx + 1, sx)
            result = np.maximum(result, canvas[:, :, rows, cols])
    return result
''',
    "_rot90": '''def _rot90(kernel, quarter_turns):
    """Kernels [..., kh, kw] turned counter-clockwise `quarter_turns` times (as np.rot90
    and torch.rot90 turn them): one family member's copy of the canonical kernels."""
    return np.rot90(kernel, quarter_turns, axes=(-2, -1))
''',
    "_mirror": '''def _mirror(kernel, mirrored):
    """Kernels [..., kh, kw] mirrored left to right when `mirrored` is odd: one family
    member's (or one case's) copy of the canonical kernels."""
    return kernel[..., ::-1] if mirrored % 2 else kernel
''',
    "_zeros": '''def _zeros(x, shape):
    """A map of zeros for each image: a neuron none of whose inputs is kept."""
    return np.zeros((len(next(iter(x.values()))), *shape))
''',
    "_amax": '''def _amax(x, keepdim):
    """The largest value of each channel's map (a global max pool)."""
    return x.max(axis=(2, 3), keepdims=keepdim)
''',
    "softmax": '''def softmax(x):
    """Softmax across the channels (axis 1)."""
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
''',
    "log_softmax": '''def log_softmax(x):
    """Log-softmax across the channels (axis 1)."""
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
''',
}


def pool_call(src: str, pools: list[dict]) -> str:
    """``src`` read through the term's entry pools, in the order the model applies them."""
    for pool in pools:
        if pool["op"] == "amax":
            src = f"_amax({src}, {pool['keepdim']})"
        else:
            args = f"{tuple(pool['kernel_size'])}, {tuple(pool['stride'])}, {tuple(pool['padding'])}, {pool['ceil_mode']}"
            src = f"_max_pool({src}, {args})"
    return src


def term_call(term, src: str, channels: str, const: str, shape) -> tuple[str, str]:
    """The code of one term for one neuron, and the helper it calls."""
    if term.kind == "linear":
        return f"_linear({src}, {channels}, {const})", "_linear"
    if pointwise(term, shape):
        return f"_weighted({src}, {channels}, {const})", "_weighted"
    return f"_conv({src}, {channels}, {const}, {tuple(term.stride)}, {tuple(term.pad)}, {tuple(shape[1:])})", "_conv"


def pointwise(term, shape) -> bool:
    """A 1x1, stride-1, unpadded convolution onto a map of the same size: a weighted sum of channels."""
    return (term.kind == "conv" and term.kernels.shape[2:] == (1, 1) and tuple(term.stride) == (1, 1)
            and tuple(term.pad) == (0, 0) and term.source_map == tuple(shape[1:]))  # fmt: skip


def literal(values: np.ndarray, prefix: str = "", per_line: int = 5) -> str:
    """A small array as a literal, in the model's own float32 precision (its shortest exact form): on one
    line after ``prefix`` when it fits in 88 characters, else a few numbers per line."""
    numbers = [float_literal(v) for v in np.asarray(values).reshape(-1)]
    reshape = "" if np.ndim(values) <= 1 else f".reshape{tuple(np.shape(values))}"
    one = f"np.array([{', '.join(numbers)}]){reshape}"
    if len(prefix) + len(one) <= 88:
        return one
    rows = [", ".join(numbers[i : i + per_line]) for i in range(0, len(numbers), per_line)]
    return "np.array([\n" + "".join(f"    {r},\n" for r in rows) + f"]){reshape}"


def channel_tuple(channels: list[int], total: int) -> str:
    """The kept channels of a source as code: ``ALL`` when every one is kept in order."""
    if channels == list(range(total)):
        return "ALL"
    return "[" + ", ".join(map(str, channels)) + "]"


def line(prefix: str, call: str) -> str:
    return wrap_call(prefix, call)
