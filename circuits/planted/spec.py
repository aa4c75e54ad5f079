"""The planted-circuit spec: layers of named neurons whose weights are stated exactly.

A :class:`PlantedSpec` is an input (named channels, height, width) followed by layers. Each :class:`Layer`
holds :class:`Neuron` s; a neuron is ``act(bias + sum over inputs of weight · (kernel ⋆ source))`` where
``source`` names a neuron of the previous layer (or an input channel, for the first layer), ``⋆`` is
cross-correlation exactly as ``nn.Conv2d`` computes it, and ``kernel[dy][dx]`` is in the source's (H, W)
coordinates. An input without a kernel reads the source at the same position (a centred delta).

A layer with ``branches`` instead of neurons is an Inception-style concat: each branch is a layer of its
own reading the same previous layer, and the next layer sees their neurons concatenated in branch order.

With ``bn``, the weights and biases in the spec are the *effective* ones — those of the pre-activation
after BatchNorm is folded in — and the compiled conv holds them divided by BN's scale. See
:func:`effective_weights`.

Specs round-trip through plain dicts (:meth:`PlantedSpec.to_dict` / :meth:`PlantedSpec.from_dict`), so they
load from YAML or JSON (:func:`load_spec`). Everything is validated on construction; a spec that cannot
be compiled raises :class:`circuits.errors.BadSpecError` with one sentence naming the problem and the fix.
"""

from __future__ import annotations

import json
import keyword
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from circuits.errors import BadSpecError, close_matches_hint
from circuits.planted import kernels

SPEC_SCHEMA_VERSION = 1
ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default negative slope
# Names a layer or branch cannot take: they are attributes of the compiled modules.
RESERVED = frozenset({"spec", "input_shape", "layer_names", "branch_names", "conv", "bn", "act", "layer"})


@dataclass
class Input:
    """One weighted input of a neuron: ``weight · (kernel ⋆ source)``.

    ``kernel`` is ``None`` (a 1-at-the-centre delta), an array-like ``[kh][kw]``, or a generator dict such as
    ``{"generator": "line", "angle": 45}`` (see :mod:`circuits.planted.kernels`).
    """

    source: str
    weight: float = 1.0
    kernel: list | dict | np.ndarray | None = None

    def to_dict(self) -> dict:
        out: dict = {"source": self.source, "weight": float(self.weight)}
        if isinstance(self.kernel, dict):
            out["kernel"] = dict(self.kernel)
        elif self.kernel is not None:
            out["kernel"] = np.asarray(self.kernel, dtype=np.float64).tolist()
        return out


@dataclass
class Neuron:
    """A neuron: ``act(bias + sum of its inputs)``; its name is its channel label."""

    name: str
    inputs: list[Input] = field(default_factory=list)
    bias: float = 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "bias": float(self.bias), "inputs": [i.to_dict() for i in self.inputs]}


@dataclass
class BatchNorm:
    """Eval-mode BatchNorm statistics for a layer: ``scale = gamma / sqrt(var + eps)``.

    Any list left ``None`` gets deterministic, non-trivial values by channel index (see :meth:`resolved`),
    so folding visibly matters. There is no ``beta``: the compiled conv has no bias and BN's shift is set
    so that the *effective* bias equals each neuron's ``bias``.
    """

    gamma: list[float] | None = None
    mean: list[float] | None = None
    var: list[float] | None = None
    eps: float = 1e-5

    def resolved(self, n: int) -> dict[str, np.ndarray]:
        i = np.arange(n)
        defaults = {
            "gamma": 0.6 + 0.3 * (i % 4),
            "mean": 0.2 * ((i % 5) - 2) + 0.05,
            "var": 0.5 + 0.5 * (i % 3),
        }
        out = {}
        for key, default in defaults.items():
            given = getattr(self, key)
            out[key] = default.astype(np.float64) if given is None else np.asarray(given, dtype=np.float64)
        return out

    def scale(self, n: int) -> np.ndarray:
        stats = self.resolved(n)
        return stats["gamma"] / np.sqrt(stats["var"] + self.eps)

    def to_dict(self) -> dict:
        out: dict = {"eps": float(self.eps)}
        for key in ("gamma", "mean", "var"):
            value = getattr(self, key)
            if value is not None:
                out[key] = [float(v) for v in value]
        return out


@dataclass
class Layer:
    """A neuron layer (``neurons``) or an Inception-style concat of branch layers (``branches``).

    ``kernel_size`` is an int or ``(kh, kw)``; ``padding`` (zeros) defaults to ``kernel_size // 2``, which
    needs an odd size. ``act`` is one of ``relu``, ``leaky_relu`` (slope 0.01), ``sigmoid``, ``tanh``.
    """

    name: str
    neurons: list[Neuron] = field(default_factory=list)
    kernel_size: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | None = None
    act: str = "relu"
    bn: BatchNorm | None = None
    branches: list[Layer] = field(default_factory=list)
    # Filled in by PlantedSpec: the names of the channels this layer reads, in channel order.
    sources: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    @property
    def is_concat(self) -> bool:
        return bool(self.branches)

    @property
    def kernel_hw(self) -> tuple[int, int]:
        return _pair(self.kernel_size)

    @property
    def padding_hw(self) -> tuple[int, int]:
        if self.padding is None:
            return self.kernel_hw[0] // 2, self.kernel_hw[1] // 2
        return _pair(self.padding)

    @property
    def channel_names(self) -> list[str]:
        """The neurons this layer outputs, in channel order (a concat's are its branches' in turn)."""
        if self.is_concat:
            return [n for b in self.branches for n in b.channel_names]
        return [n.name for n in self.neurons]

    def output_hw(self, height: int, width: int) -> tuple[int, int]:
        if self.is_concat:
            return self.branches[0].output_hw(height, width)
        (kh, kw), (ph, pw) = self.kernel_hw, self.padding_hw
        return height + 2 * ph - kh + 1, width + 2 * pw - kw + 1

    def to_dict(self) -> dict:
        if self.is_concat:
            return {"name": self.name, "branches": [b.to_dict() for b in self.branches]}
        out: dict = {"name": self.name, "kernel_size": _plain_pair(self.kernel_size)}
        if self.padding is not None:
            out["padding"] = _plain_pair(self.padding)
        out["act"] = self.act
        if self.bn is not None:
            out["bn"] = self.bn.to_dict()
        out["neurons"] = [n.to_dict() for n in self.neurons]
        return out


@dataclass
class InputSpec:
    """The image: named channels (the first layer's sources) and its size."""

    channels: list[str] = field(default_factory=lambda: ["gray"])
    height: int = 24
    width: int = 24

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.channels), int(self.height), int(self.width))

    def to_dict(self) -> dict:
        return {"channels": list(self.channels), "height": int(self.height), "width": int(self.width)}


@dataclass
class PlantedSpec:
    """A network with known circuits. Validated on construction (raises :class:`BadSpecError`).

    ``motifs`` is free-form documentation of what is planted, for tests to use as the oracle: a list of
    dicts with a ``kind`` (``rotation``, ``reflection``, ``union``, ``opponent``, ``and``, ``decoy``, ...)
    and the layer and neuron names involved.
    """

    name: str
    input: InputSpec
    layers: list[Layer]
    description: str = ""
    motifs: list[dict] = field(default_factory=list)

    def __post_init__(self):
        validate(self)

    # -- lookup ---------------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.input.shape

    def layer(self, name: str) -> Layer:
        """The layer (or branch, as ``concat.branch``) called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
            for branch in layer.branches:
                if f"{layer.name}.{branch.name}" == name:
                    return branch
        names = [qualified for qualified, _ in self.neuron_layers()] + [layer.name for layer in self.layers]
        raise BadSpecError(f"spec '{self.name}' has no layer '{name}'{close_matches_hint(name, names)}")

    def neuron_layers(self) -> list[tuple[str, Layer]]:
        """(qualified name, layer) for every neuron layer, in forward order; branches as ``concat.branch``."""
        out = []
        for layer in self.layers:
            if layer.is_concat:
                out.extend((f"{layer.name}.{b.name}", b) for b in layer.branches)
            else:
                out.append((layer.name, layer))
        return out

    def labels(self) -> dict[str, str]:
        """``{"LAYER:CHANNEL": neuron name}`` for every neuron, with the compiled module's layer names."""
        return {
            f"{qualified}:{channel}": neuron.name
            for qualified, layer in self.neuron_layers()
            for channel, neuron in enumerate(layer.neurons)
        }

    def neuron_id(self, layer: str, neuron: str) -> str:
        """``"LAYER:CHANNEL"`` of the neuron called ``neuron`` in (qualified) layer ``layer``."""
        names = self.layer(layer).channel_names
        if neuron not in names:
            raise BadSpecError(
                f"layer '{layer}' has no neuron '{neuron}'{close_matches_hint(neuron, names)}"
            )
        if "." in layer or not self.layer(layer).is_concat:
            return f"{layer}:{names.index(neuron)}"
        for branch in self.layer(layer).branches:
            if neuron in branch.channel_names:
                return f"{layer}.{branch.name}:{branch.channel_names.index(neuron)}"
        raise AssertionError("unreachable")

    # -- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema_version": SPEC_SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "input": self.input.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
            "motifs": [dict(m) for m in self.motifs],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> PlantedSpec:
        return _spec_from_dict(data)


# -- validation ---------------------------------------------------------------------------------------


def validate(spec: PlantedSpec) -> None:
    """Check every name, reference, shape and parameter; fill in each layer's ``sources``."""
    if not spec.layers:
        raise BadSpecError(f"spec '{spec.name}' has no layers; add at least one layer of neurons")
    channels, height, width = spec.input.shape
    if channels == 0 or height <= 0 or width <= 0:
        raise BadSpecError(f"spec '{spec.name}': input needs at least one channel and a positive height and width")
    _unique(spec.input.channels, "input channel", f"spec '{spec.name}' input")
    _unique([layer.name for layer in spec.layers], "layer", f"spec '{spec.name}'")
    sources, hw = list(spec.input.channels), (height, width)
    previous = "the input"
    for layer in spec.layers:
        _check_identifier(layer.name, "layer")
        if layer.is_concat:
            if layer.neurons:
                raise BadSpecError(
                    f"concat layer '{layer.name}' has both branches and neurons; move the neurons into a branch"
                )
            _unique([b.name for b in layer.branches], "branch", f"concat layer '{layer.name}'")
            shapes = set()
            for branch in layer.branches:
                if branch.is_concat:
                    raise BadSpecError(
                        f"branch '{layer.name}.{branch.name}' is itself a concat; nest concats one level only"
                    )
                _check_identifier(branch.name, "branch")
                _check_layer(branch, f"{layer.name}.{branch.name}", sources, previous, hw)
                shapes.add(branch.output_hw(*hw))
            if len(shapes) > 1:
                raise BadSpecError(
                    f"concat layer '{layer.name}': branches give different output sizes {sorted(shapes)}; "
                    "choose paddings so every branch keeps the same height and width"
                )
            layer.sources = tuple(sources)
        else:
            _check_layer(layer, layer.name, sources, previous, hw)
        _unique(layer.channel_names, "neuron", f"layer '{layer.name}'")
        sources, hw, previous = layer.channel_names, layer.output_hw(*hw), f"layer '{layer.name}'"


def _check_layer(layer: Layer, qualified: str, sources: list[str], previous: str, hw) -> None:
    where = f"layer '{qualified}'"
    if not layer.neurons:
        raise BadSpecError(f"{where} has no neurons; add neurons or remove the layer")
    if layer.act not in ACTIVATIONS:
        raise BadSpecError(
            f"{where}: unknown act '{layer.act}'{close_matches_hint(str(layer.act), ACTIVATIONS)} "
            f"(use one of {', '.join(ACTIVATIONS)}; every planted layer must be a neuron layer)"
        )
    (kh, kw), (ph, pw) = layer.kernel_hw, layer.padding_hw
    if kh <= 0 or kw <= 0 or ph < 0 or pw < 0:
        raise BadSpecError(f"{where}: kernel_size must be positive and padding non-negative")
    if layer.padding is None and (kh % 2 == 0 or kw % 2 == 0):
        raise BadSpecError(
            f"{where}: even kernel_size {kh}x{kw} has no centre; use an odd size or give padding explicitly"
        )
    out_h, out_w = layer.output_hw(*hw)
    if out_h <= 0 or out_w <= 0:
        raise BadSpecError(f"{where}: a {kh}x{kw} kernel with padding {ph},{pw} leaves no output from {hw[0]}x{hw[1]}")
    if layer.bn is not None:
        _check_bn(layer, where)
    known = set(sources)
    for neuron in layer.neurons:
        if not isinstance(neuron.name, str) or not neuron.name:
            raise BadSpecError(f"{where}: every neuron needs a non-empty string name")
        seen = set()
        for item in neuron.inputs:
            at = f"{where} neuron '{neuron.name}'"
            if item.source not in known:
                raise BadSpecError(
                    f"{at} reads unknown neuron '{item.source}'{close_matches_hint(str(item.source), sources)} "
                    f"(inputs must name a neuron of {previous})"
                )
            if item.source in seen:
                raise BadSpecError(f"{at} reads '{item.source}' twice; merge the two inputs into one kernel")
            seen.add(item.source)
            input_kernel(item, layer, f"{at} input '{item.source}'")
    layer.sources = tuple(sources)


def _check_bn(layer: Layer, where: str) -> None:
    n = len(layer.neurons)
    for key in ("gamma", "mean", "var"):
        value = getattr(layer.bn, key)
        if value is not None and len(value) != n:
            raise BadSpecError(f"{where}: bn {key} has {len(value)} values for {n} neurons; give one per neuron")
    stats = layer.bn.resolved(n)
    if np.any(stats["var"] + layer.bn.eps <= 0):
        raise BadSpecError(f"{where}: bn var + eps must be positive")
    if np.any(stats["gamma"] == 0):
        raise BadSpecError(f"{where}: bn gamma must be non-zero, or the effective weights cannot be realised")


def input_kernel(item: Input, layer: Layer, where: str = "kernel") -> np.ndarray:
    """The ``[kh, kw]`` float64 kernel of one input, weight included."""
    kh, kw = layer.kernel_hw
    if item.kernel is None:
        if kh % 2 == 0 or kw % 2 == 0:
            raise BadSpecError(f"{where}: an input without a kernel needs an odd kernel_size to have a centre")
        kernel = np.zeros((kh, kw))
        kernel[kh // 2, kw // 2] = 1.0
    elif isinstance(item.kernel, dict):
        if kh != kw:
            raise BadSpecError(f"{where}: generators make square kernels but the layer's kernel_size is {kh}x{kw}")
        kernel = kernels.generate(item.kernel, kh, where)
    else:
        try:
            kernel = np.asarray(item.kernel, dtype=np.float64)
        except (TypeError, ValueError):
            raise BadSpecError(f"{where}: kernel must be a 2-D array of numbers or a generator dict") from None
        if kernel.shape != (kh, kw):
            raise BadSpecError(
                f"{where}: kernel shape {'x'.join(map(str, kernel.shape)) or 'scalar'} does not match the "
                f"layer's kernel_size {kh}x{kw}; give a {kh}x{kw} array or change kernel_size"
            )
    try:
        weight = float(item.weight)
    except (TypeError, ValueError):
        raise BadSpecError(f"{where}: weight must be a number, got {item.weight!r}") from None
    if not np.all(np.isfinite(kernel)) or not np.isfinite(weight):
        raise BadSpecError(f"{where}: kernel and weight must be finite numbers")
    return weight * kernel


def effective_weights(layer: Layer, spec: PlantedSpec | None = None) -> np.ndarray:
    """The pre-activation's weights ``[out, in, kh, kw]`` (float64), BatchNorm folded in.

    These are the numbers a circuit-extraction engine should recover: ``W[n, m] = weight · kernel`` for
    neuron ``n`` reading source ``m`` (channel order of the previous layer, or of the concat it reads).
    ``layer`` is a layer of a validated spec (``spec.layer(name)``), or a name with ``spec`` given.
    """
    layer = _resolve_layer(layer, spec)
    index = {name: i for i, name in enumerate(layer.sources)}
    kh, kw = layer.kernel_hw
    weights = np.zeros((len(layer.neurons), len(layer.sources), kh, kw))
    for n, neuron in enumerate(layer.neurons):
        for item in neuron.inputs:
            weights[n, index[item.source]] += input_kernel(item, layer)
    return weights


def effective_bias(layer: Layer, spec: PlantedSpec | None = None) -> np.ndarray:
    """The pre-activation's bias ``[out]`` (float64), BatchNorm folded in: each neuron's ``bias``."""
    layer = _resolve_layer(layer, spec)
    return np.array([float(n.bias) for n in layer.neurons], dtype=np.float64)


def _resolve_layer(layer, spec) -> Layer:
    if isinstance(layer, str):
        if spec is None:
            raise BadSpecError(f"effective_weights('{layer}') needs the spec: pass spec=")
        layer = spec.layer(layer)
    if layer.is_concat:
        raise BadSpecError(
            f"layer '{layer.name}' is a concat, not a neuron layer; ask for one of its branches "
            f"({', '.join(b.name for b in layer.branches)})"
        )
    if not layer.sources:
        raise BadSpecError(
            f"layer '{layer.name}' is not part of a validated PlantedSpec; take it from spec.layer(name)"
        )
    return layer


def _check_identifier(name, what: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise BadSpecError(
            f"{what} name {name!r} is not a Python identifier; use letters, digits and '_' (e.g. 'wedges')"
        )
    if name in RESERVED or name.startswith("_") or hasattr(_module_base(), name):
        raise BadSpecError(f"{what} name '{name}' is reserved by the compiled module; choose another name")


def _module_base():
    from torch import nn

    return nn.Module


def _unique(names, what: str, where: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise BadSpecError(f"{where} has two {what}s named '{name}'; {what} names must be unique")
        seen.add(name)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise BadSpecError(f"expected an int or a pair (h, w), got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _plain_pair(value):
    return list(_pair(value)) if isinstance(value, (list, tuple)) else int(value)


# -- loading from dicts, YAML, JSON --------------------------------------------------------------------


def _keys(data, allowed: tuple[str, ...], where: str, required: tuple[str, ...] = ()) -> dict:
    if not isinstance(data, dict):
        raise BadSpecError(f"{where} must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise BadSpecError(
                f"{where}: unknown key '{key}'{close_matches_hint(str(key), allowed)} "
                f"(allowed: {', '.join(allowed)})"
            )
    for key in required:
        if key not in data:
            raise BadSpecError(f"{where}: missing required key '{key}'")
    return data


def _number(value, where: str) -> float:
    """A float from JSON/YAML; YAML 1.1 reads ``1e-5`` (no dot) as a string, so accept numeric strings."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BadSpecError(f"{where} must be a number, got {value!r}") from None


def _input_from_dict(data, where: str) -> Input:
    data = _keys(data, ("source", "weight", "kernel"), where, required=("source",))
    weight = _number(data.get("weight", 1.0), f"{where} weight")
    return Input(source=data["source"], weight=weight, kernel=data.get("kernel"))


def _neuron_from_dict(data, where: str) -> Neuron:
    data = _keys(data, ("name", "bias", "inputs"), where, required=("name",))
    name = data["name"]
    inputs = data.get("inputs") or []
    if not isinstance(inputs, list):
        raise BadSpecError(f"{where} neuron '{name}': inputs must be a list")
    return Neuron(
        name=name,
        bias=_number(data.get("bias", 0.0), f"{where} neuron '{name}' bias"),
        inputs=[_input_from_dict(i, f"{where} neuron '{name}' input {k}") for k, i in enumerate(inputs)],
    )


def _bn_from_dict(data, where: str) -> BatchNorm | None:
    if data is None or data is False:
        return None
    if data is True:
        return BatchNorm()
    data = _keys(data, ("gamma", "mean", "var", "eps"), f"{where} bn")
    return BatchNorm(
        gamma=data.get("gamma"), mean=data.get("mean"), var=data.get("var"),
        eps=_number(data.get("eps", 1e-5), f"{where} bn eps"),
    )


def _layer_from_dict(data, where: str) -> Layer:
    allowed = ("name", "neurons", "kernel_size", "padding", "act", "bn", "branches")
    if isinstance(data, dict) and "name" in data:
        where = f"layer '{data['name']}'"
    data = _keys(data, allowed, where, required=("name",))
    name = data["name"]
    if data.get("branches"):
        extra = sorted(set(data) - {"name", "branches"})
        if extra:
            raise BadSpecError(f"concat {where}: '{extra[0]}' belongs on its branches, not on the concat")
        return Layer(name=name, branches=[_layer_from_dict(b, f"{where} branch") for b in data["branches"]])
    neurons = data.get("neurons") or []
    if not isinstance(neurons, list):
        raise BadSpecError(f"{where}: neurons must be a list")
    return Layer(
        name=name,
        neurons=[_neuron_from_dict(n, where) for n in neurons],
        kernel_size=data.get("kernel_size", 1),
        padding=data.get("padding"),
        act=data.get("act", "relu"),
        bn=_bn_from_dict(data.get("bn"), where),
    )


def _spec_from_dict(data) -> PlantedSpec:
    allowed = ("schema_version", "name", "description", "input", "layers", "motifs")
    data = _keys(data, allowed, "planted spec", required=("name", "layers"))
    version = data.get("schema_version", SPEC_SCHEMA_VERSION)
    if version != SPEC_SCHEMA_VERSION:
        raise BadSpecError(
            f"planted spec schema_version {version} is not supported (this version reads {SPEC_SCHEMA_VERSION}); "
            "upgrade circuits"
        )
    inp = _keys(data.get("input", {}), ("channels", "height", "width"), "planted spec input")
    layers = data["layers"]
    if not isinstance(layers, list):
        raise BadSpecError("planted spec: layers must be a list")
    return PlantedSpec(
        name=data["name"],
        description=data.get("description", ""),
        input=InputSpec(
            channels=list(inp.get("channels", ["gray"])), height=inp.get("height", 24), width=inp.get("width", 24)
        ),
        layers=[_layer_from_dict(layer, f"layer {k}") for k, layer in enumerate(layers)],
        motifs=list(data.get("motifs") or []),
    )


def load_spec(source: str | Path | dict) -> PlantedSpec:
    """A :class:`PlantedSpec` from a dict, a ``.yaml``/``.yml``/``.json`` file, or YAML/JSON text."""
    if isinstance(source, PlantedSpec):
        return source
    if isinstance(source, dict):
        return PlantedSpec.from_dict(source)
    text = str(source)
    path = Path(text)
    if "\n" not in text and path.suffix.lower() in {".yaml", ".yml", ".json"}:
        if not path.is_file():
            raise BadSpecError(f"planted spec file '{path}' does not exist: check the path")
        text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    try:
        if data is None:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadSpecError(f"cannot parse planted spec: {first}; check the YAML/JSON syntax") from None
    if not isinstance(data, dict):
        raise BadSpecError(f"planted spec '{source}' is not a mapping with name and layers; check the file")
    return PlantedSpec.from_dict(data)
