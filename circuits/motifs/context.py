"""What every detector needs, computed once and shared: the graph, probe data, kernels and activations.

A :class:`Context` wraps one model (anything :func:`circuits.graph.build_graph` takes) and optional probe
images. Detectors ask it for

- the neurons of a *group* of layers (a layer, a concat's parts, or the direct sources of a target),
  with concat aliases resolved to the layer that computes each channel (``mixed.left:0``);
- their expanded weights to the input, aligned on one canvas (:meth:`input_kernels`);
- their activations on the probe images and on transformed probe images (:meth:`activations`);
- the direct weights into a layer (:meth:`direct`).

Everything is cached on the context, so ``find(kind="all")`` traces each layer once, within a byte budget
(:mod:`circuits.motifs.budget`): a scan of a 224-pixel network keeps the layers it is working on, not all.
"""

from __future__ import annotations

import torch

from circuits.errors import DataError, UsageError
from circuits.graph import NeuronGraph, build_graph
from circuits.motifs.budget import BudgetCache, activation_bytes, check, kernel_bytes
from circuits.motifs.transforms import Identity, Transform, disc


class Context:
    """One model plus optional probe data, with cached kernels and activations.

    Parameters
    ----------
    model : a spec string, ``nn.Module``, :class:`~circuits.models.LoadedModel` or :class:`NeuronGraph`.
    data : ``None``, an ``N x C x H x W`` tensor, or a data spec (``toyworld:256``); see :func:`probe_data`.
    factors : latent factors of the probe images (``{"label": array, "facing": array, ...}``), if known.
    device : where activations on the probe images are computed (``None``: the CPU); they are kept on the CPU.
    normalize : how images from a data *spec* are normalised before they reach the model (``0.5/0.5``,
        ``imagenet``, ``none``; see docs/data.md); default: the model's own ``preprocess``, else none. A
        tensor is taken as it is.

    A context holds one set of probe data: a detector handed a context together with other data refuses it
    (:func:`as_context`), since every cached activation belongs to the context's own data.
    """

    def __init__(self, model, data=None, factors: dict | None = None, input_shape=None, batch_size: int = 128,
                 device=None, normalize=None):  # fmt: skip
        from circuits.data import model_normalization
        from circuits.graph.run import resolve_device

        self.normalization = model_normalization(model, normalize)

        self.graph: NeuronGraph = build_graph(model, input_shape)
        self.name = _model_name(model, self.graph)
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.factors = factors
        self.data_spec: str | None = None
        self.data: torch.Tensor | None = None
        self._set_data(data)
        self._kernels = BudgetCache()  # expanded kernels: hundreds of MB per layer at 224 pixels
        self._acts = BudgetCache()
        self._direct = BudgetCache()  # a depthwise layer's direct weights are dense: [C, C, 3, 3]
        self._fidelity: dict[tuple[str, ...], torch.Tensor] = {}
        self.memo = BudgetCache(self._kernels.budget // 4)  # detectors' derived results (equivariance maps)

    def _set_data(self, data) -> None:
        if isinstance(data, str):
            self.data_spec = data
            data, found = probe_data(data, self.graph.input_shape)
            self.factors = self.factors or found
            if self.normalization is not None:
                data = self.normalization.apply(data)
        if data is not None:
            from circuits.graph.run import check_data

            data = check_data(self.graph, data)
            if len(data) < 2:
                raise DataError(f"motif detection needs at least 2 probe images, got {len(data)}")
        self.data = data

    def use_data(self, data) -> Context:
        """This context, after checking that ``data`` (a tensor, a spec or ``None``) is the data it holds.

        A context without data takes ``data`` (results derived without it are dropped); one that holds
        other data refuses it with a :class:`UsageError`: make a new context for other data.
        """
        if data is None or (isinstance(data, str) and data == self.data_spec):
            return self
        if self.data is None:
            self._set_data(data)
            self.memo.clear()
            return self
        given = data
        if isinstance(data, str):
            given, _ = probe_data(data, self.graph.input_shape)
            if self.normalization is not None:
                given = self.normalization.apply(given)
        if not isinstance(given, torch.Tensor) or given.shape != self.data.shape or not torch.equal(
                given.to(self.data.dtype), self.data):  # fmt: skip
            held = self.data_spec or f"a tensor of {len(self.data)} images"
            raise UsageError(
                f"this Context already holds other probe data ({held}); pass no data with it, or make a new "
                "Context for this data"
            )
        return self

    # -- names -------------------------------------------------------------------------------------------
    @property
    def input_layer(self) -> str:
        return self.graph.input_layer

    def parts(self, layer: str) -> list[str]:
        """The layers that compute ``layer``'s channels: its concat parts (recursively), or itself."""
        info = self.graph.layer(layer)
        if info.kind != "concat":
            return [info.name]
        return [p for part, _, _ in info.parts for p in self.parts(part)]

    def neurons(self, layers: list[str]) -> list[str]:
        """``LAYER:CHANNEL`` of every channel of ``layers``, in order."""
        return [f"{name}:{c}" for name in layers for c in range(self.graph.layers[name].channels)]

    def analysable(self, layer: str | None = None) -> list[str]:
        """Layers with spatial neurons worth scanning: ``layer`` alone, or every activation and concat layer
        (parts of a scanned concat are covered by it)."""
        if layer is not None:
            info = self.graph.layer(layer)
            if info.kind == "input":
                raise UsageError(f"layer '{layer}' is the model input; pick a layer with neurons (`circuits layers`)")
            return [info.name]
        covered = {p for name, info in self.graph.layers.items() if info.kind == "concat" for p in self.parts(name)}
        return [
            name for name, info in self.graph.layers.items()
            if info.kind in ("activation", "concat") and name not in covered and len(info.shape) == 3
        ]  # fmt: skip

    def targets(self, layer: str | None = None) -> list[str]:
        """Layers with weights into them (unions and opponents are read there): ``layer`` or every one."""
        if layer is not None:
            names = [p for p in self.parts(layer)]
            return [n for n in names if self.graph.layers[n].preact is not None and self.graph.layers[n].sources]
        return [
            name for name, info in self.graph.layers.items()
            if info.preact is not None and info.sources and any(
                self.graph.layers[s].kind != "input" for s in info.sources)
        ]  # fmt: skip

    def sources(self, target: str) -> list[str]:
        """The spatial neuron layers that feed ``target`` directly (the input and gates left out)."""
        layers = [s for s in self.graph.layer(target).sources if self.graph.layers[s].kind not in ("input", "gate")]
        return [s for s in layers if len(self.graph.layers[s].shape) == 3]

    def check_memory(self, groups: list[list[str]], weights: bool = True) -> None:
        """Refuse, before any work, a scan whose largest group of layers would pass the memory limit."""
        check(self.graph, [g for g in groups if g], 0 if self.data is None else len(self.data), weights)

    def scan(self, names: list[str], desc: str, groups, weights: bool = True):
        """``names`` one by one under a progress bar, once the groups each needs (``groups(name)``, a list
        of layer lists) are known to fit in memory: a scan that cannot finish is refused before it starts."""
        from circuits.progress import progress_bar

        self.check_memory([g for name in names for g in groups(name)], weights)
        with progress_bar(desc, total=len(names), unit="layer") as bar:
            for name in names:
                bar.set_postfix_str(name, refresh=False)
                yield name
                bar.update(1)

    # -- weights -----------------------------------------------------------------------------------------
    def direct(self, layer: str):
        """Direct weights into ``layer`` (a :class:`circuits.trace.Weights`)."""
        if layer not in self._direct:
            from circuits import trace

            self._direct[layer] = trace.weights(self.graph, target=layer)
        return self._direct[layer]

    def input_kernels(self, layers: list[str]) -> tuple[torch.Tensor, bool]:
        """Expanded weights from the input to every channel of ``layers``: ``[C, C_in, kh, kw]``.

        Each layer's kernels are placed on one canvas by their receptive-field origin, so channels of
        different concat branches (5x5 and 3x3, say) line up around the same centre. Also returns whether
        any receptive field was clipped by the image border (then transforms of it are approximate).
        """
        key = tuple(layers)
        if key not in self._kernels:
            from circuits import trace

            self._kernels.make_room(kernel_bytes(self.graph, layers))  # older layers go before, not after
            channels = sum(self.graph.layers[name].channels for name in layers)
            canvas, box, first, clipped = None, None, 0, False
            for name in layers:  # each layer placed as soon as it is traced: one layer's kernels in flight
                weights = trace.weights(self.graph, self.input_layer, name, expanded=True)
                ks = weights.kernel_sets[0]
                del weights
                if ks.kernels.dim() != 4:
                    raise UsageError(f"the input of '{name}' is not an image: its kernels are {tuple(ks.kernels.shape)}")
                if len(layers) == 1:  # its own canvas: no copy (a 224-pixel layer's kernels are most of a GB)
                    canvas, clipped = ks.kernels.float(), ks.clipped
                    break
                (y, x), (h, w) = ks.origin, ks.kernels.shape[-2:]
                grown = (y, x, y + h, x + w) if box is None else (min(box[0], y), min(box[1], x),
                                                                  max(box[2], y + h), max(box[3], x + w))  # fmt: skip
                if grown != box:  # the canvas grows to the union of the receptive fields placed so far
                    bigger = torch.zeros(channels, ks.kernels.shape[1], grown[2] - grown[0], grown[3] - grown[1])
                    if canvas is not None:
                        top, left = box[0] - grown[0], box[1] - grown[1]
                        bigger[:, :, top : top + canvas.shape[-2], left : left + canvas.shape[-1]] = canvas
                    canvas, box = bigger, grown
                c = ks.kernels.shape[0]
                canvas[first : first + c, :, y - box[0] : y - box[0] + h, x - box[1] : x - box[1] + w] = ks.kernels
                first += c
                clipped = clipped or ks.clipped
            self._kernels[key] = (canvas, clipped)
        return self._kernels[key]

    # -- activations -------------------------------------------------------------------------------------
    def activations(self, layers: list[str], transform: Transform | None = None, masked: bool = False):
        """Activations of ``layers`` (channels concatenated) on the probe images transformed by ``transform``.

        With ``masked`` the images are first cut to their inscribed disc (soft edge), so an interpolated
        rotation does not paint new corners into them: the masked image rotates onto itself.
        """
        if self.data is None:
            raise DataError("this detector needs probe images: pass data (e.g. toyworld:256)")
        transform = transform or Identity()
        key = (tuple(layers), repr(transform), masked)
        if key not in self._acts:
            self._acts.make_room(activation_bytes(self.graph, layers, len(self.data)))
            images = self.data
            if masked:
                images = images * disc(*images.shape[-2:], soft=1.5)
            images = transform(images)
            acts = self.graph.run(images, list(layers), batch_size=self.batch_size, device=self.device)
            shapes = {tuple(acts[n].shape[2:]) for n in layers}
            if len(shapes) > 1:
                raise UsageError(f"layers {', '.join(layers)} have different map sizes {sorted(shapes)}; analyse them apart")
            self._acts[key] = torch.cat([acts[n] for n in layers], dim=1).float()
        return self._acts[key]


    def fidelity(self, layers: list[str]) -> torch.Tensor:
        """``[C]``: how well each neuron's expanded weights describe it on the probe images.

        The correlation, over images and positions, of the neuron's *linearised* pre-activation (every
        nonlinearity read as the identity: the response its expanded weights predict, bias included) with
        its real pre-activation. Near 1 in a first layer and wherever ReLUs rarely cut; low where the
        function lives in the nonlinearities (a complex cell ``relu(k·x) + relu(-k·x)`` has expanded
        weights of zero). Weight evidence about a neuron counts, for or against, only where this is high
        (:data:`circuits.motifs.families.FIDELITY`). NaN for a neuron constant on the data.
        """
        key = tuple(layers)
        if key not in self._fidelity:
            if self.data is None:
                raise DataError("the fidelity of expanded weights is measured on probe images: pass data")
            self._fidelity[key] = torch.cat([self._layer_fidelity(name) for name in layers])
        return self._fidelity[key]

    def _layer_fidelity(self, name: str) -> torch.Tensor:
        from circuits.graph.paths import make_path_function

        info = self.graph.layers[name]
        if info.preact is None:  # nothing linear to compare with: the weights are not refuted either
            return torch.ones(info.channels)
        linear = make_path_function(self.graph, [self.graph.layers[self.input_layer].node], info.preact,
                                    linearise=True)  # fmt: skip
        real = self.graph.run(self.data, [name], preact=True, batch_size=self.batch_size, device=self.device)[name]
        with torch.no_grad():
            predicted = torch.cat([_dense_value(linear(self.data[i : i + self.batch_size]), real.shape[1:])
                                   for i in range(0, len(self.data), self.batch_size)])  # fmt: skip
        x = real.transpose(0, 1).reshape(real.shape[1], -1).double()
        y = predicted.transpose(0, 1).reshape(real.shape[1], -1).double()
        x, y = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
        denominator = x.norm(dim=1) * y.norm(dim=1)
        corr = (x * y).sum(1) / denominator.clamp_min(1e-30)
        return torch.where(denominator > 1e-12, corr, torch.full_like(corr, float("nan"))).float()


def _dense_value(value, shape) -> torch.Tensor:
    """A path function's value as a plain tensor of the layer's shape (a constant, bias-only response
    comes back as a scalar or a broadcastable tensor)."""
    value = torch.as_tensor(getattr(value, "value", value)).float()
    return value.expand(value.shape[0] if value.dim() == len(shape) + 1 else 1, *shape).clone()


def as_context(model, data=None, **kwargs) -> Context:
    """``model`` itself if it is a :class:`Context` (refusing ``data`` that conflicts with its own, see
    :meth:`Context.use_data`), else a new ``Context(model, data, **kwargs)``."""
    if isinstance(model, Context):
        return model.use_data(data)
    return Context(model, data, **kwargs)


def _model_name(model, graph: NeuronGraph) -> str:
    if isinstance(model, str):
        return model
    spec = getattr(model, "spec", None)
    if isinstance(spec, str):
        return spec
    return graph.spec or type(model).__name__


def probe_data(spec: str, input_shape) -> tuple[torch.Tensor, dict | None]:
    """Images for a data spec (:func:`circuits.data.load_data`) and, for toy-world specs, their latent
    factors (``label`` plus the generator's latents), which :mod:`circuits.motifs.polysemy` reads."""
    from circuits.data import load_data

    images = load_data(spec, input_shape)
    factors = None
    scheme, _, rest = str(spec).strip().partition(":")
    if scheme == "toyworld":
        from circuits.data import toyworld

        parts = rest.split(":") if rest else []
        task = parts.pop(0) if parts and not parts[0].lstrip("-").isdigit() else "objects"
        n = int(parts[0]) if parts else len(images)
        seed = int(parts[1]) if len(parts) > 1 else 0
        channels, size = images.shape[1], images.shape[-1]
        again, labels, latents = toyworld.generate(n, seed=seed, size=size, rgb=channels == 3, task=task)
        if torch.equal(again, images):  # the same images: their factors are known
            factors = {"label": labels.numpy(), **latents, "label_names": list(toyworld.class_names(task)),
                       "task": task}
    return images, factors
