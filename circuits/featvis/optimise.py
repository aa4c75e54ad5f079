"""Feature visualisation: optimise images that drive neurons, every channel of a layer in one batch.

One batch holds one image per (neuron, copy); the objective scores each image for its own neuron, so the
gradient of the summed score moves each image for its neuron alone, and a whole layer costs about what one
neuron costs when the batch fits (the Lucent way runs a separate optimisation per neuron). Activations come
from :func:`circuits.graph.run` with ``grad=True`` (the model in eval mode, no hooks, restored afterwards),
so ``device="cuda"`` runs it on a GPU. The objective is climbed on the layer's pre-activation where it has
one: a neuron whose ReLU is off on the starting noise (a negative bias) would otherwise get no gradient at
all; the activation reported is the layer's own output. Deeper, the ReLUs *before* the layer are off too
on low-contrast noise (a planted wedge detector reads line detectors with negative biases), so the first
``warmup`` share of the steps climbs the linearised path instead (Distill's expanded weights: every ReLU
read as the identity), which points the image at the neuron's inputs; the rest climbs the real network, so
the picture is what the real network responds to (Lucid's "redirected ReLU" solves the same problem).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from circuits import arguments
from circuits.errors import UsageError
from circuits.featvis import robust
from circuits.featvis.objectives import Channel
from circuits.featvis.param import Fourier
from circuits.limits import check_seed
from circuits.trace.kernels import receptive_field

STEPS = 256
LR = 0.05
MAX_COPIES = 64
CPU_BATCH = 16  # benchmarks/RESULTS_featvis.md: batch 16 is 3.2x faster per neuron than 144 on the CPU
GPU_BATCH = 256
WARMUP = 0.25  # the first quarter of the steps climbs the linearised path (see _linearised)


@dataclass
class Pictures:
    """Optimised images and what they reach.

    images : ``[N, C, H, W]`` in [0, 1], at the model's input size; image ``i`` belongs to ``neurons[i]``.
    activation : each image's neuron, read on the layer's output (after its ReLU) by the objective's own
        reading (a negative objective's unnegated), on the untransformed image at the end.
    positions : ``[N, 2]``, the map position the objective read each neuron at (a :class:`Neuron`
        objective's), or ``None`` where it read the whole map.
    """

    layer: str
    neurons: list[str]
    images: torch.Tensor
    activation: torch.Tensor
    settings: dict = field(default_factory=dict)
    positions: torch.Tensor | None = None


def visualise(model, layer: str, channels=None, *, objective=None, param=None, steps: int = STEPS, lr: float = LR,
              copies: int = 1, transforms=robust.DEFAULT, seed: int = 0, warmup: float = WARMUP,
              batch_size: int | None = None, diversity: float = 0.0, device=None) -> Pictures:  # fmt: skip
    """Pictures of ``channels`` of ``layer`` (default: every one), ``copies`` images each.

    ``model``: anything :func:`circuits.graph.build_graph` takes. ``objective``: a value from
    :mod:`circuits.featvis.objectives` (default :class:`Channel`; a class logit is ``Channel`` of the output
    layer). ``param``: :class:`~circuits.featvis.param.Fourier` (default) or ``Phase``. Deterministic for a
    given seed on the CPU. Channels are optimised ``batch_size`` images at a time (default 16 on the CPU,
    where bigger batches are slower per image, and 256 on a GPU); ``warmup`` is the share
    of the steps taken on the linearised path (0 for none). ``diversity`` (with ``copies`` > 1) adds to the
    loss the cosine between each pair of a neuron's copies, centred, inside the receptive field, scaled by
    the typical score: without it copies from different starts converge to one picture.
    """
    from circuits.graph import build_graph
    from circuits.graph.run import graph_on, resolve_device

    graph = build_graph(model)
    info = graph.layer(layer)
    channels = info.channel_list(channels)
    steps = arguments.integer(steps, "steps", minimum=1)
    copies = arguments.integer(copies, "copies", minimum=1)
    device = resolve_device(device)
    if batch_size is None:  # the CPU's fastest measured batch; a GPU wants the whole layer (benchmarks/)
        batch_size = CPU_BATCH if device.type == "cpu" else GPU_BATCH
    batch_size = arguments.integer(batch_size, "batch_size", minimum=1)
    seed = check_seed(arguments.integer(seed, "seed"))
    lr, warmup = arguments.number(lr, "lr"), arguments.number(warmup, "warmup")
    diversity = arguments.number(diversity, "diversity")
    if not 0 <= diversity < math.inf:
        raise UsageError(f"diversity must be a weight of 0 or more, got {diversity}")
    batch_size = -(-batch_size // copies) * copies  # a neuron's copies share a batch: diversity compares them
    if copies > MAX_COPIES or not 0 <= warmup <= 1 or not 0 < lr < math.inf:
        raise UsageError(f"copies must be at most {MAX_COPIES}, warmup a share from 0 to 1 and lr positive "
                         f"(got copies={copies}, warmup={warmup}, lr={lr})")  # fmt: skip
    objective = objective or Channel()
    param = param or Fourier()
    wanted = [(c, copy) for c in channels for copy in range(copies)]
    shape = tuple(graph.input_shape)
    start, stop, _ = receptive_field(graph, info.name)  # the jitter is a share of it
    window = (slice(None), slice(None), *(slice(a, b) for a, b in zip(start, stop)))
    size = max((b - a for a, b in zip(start, stop)), default=max(shape[1:]))
    linear = _linearised(graph_on(graph, device), info.name) if warmup > 0 else None  # its weights on the device
    images, reached = [], []
    from circuits.progress import progress_bar

    with progress_bar(f"pictures of {info.name}", total=steps * len(wanted), unit="step") as bar:
        for first in range(0, len(wanted), batch_size):
            part = wanted[first : first + batch_size]
            starts = [_start(param, shape, seed, c, copy) for c, copy in part]
            img, act = _optimise(graph, info.name, [c for c, _ in part], starts, objective, param, shape, steps, lr,
                                 transforms, size, seed, warmup, linear, device, bar, (diversity, copies, window))  # fmt: skip
            images.append(img)
            reached.append(act)
    settings = {"objective": objective.to_dict(), "param": param.to_dict(), "steps": steps, "lr": lr,
                "copies": copies, "diversity": diversity, "seed": seed, "transforms": [repr(t) for t in transforms]}  # fmt: skip
    reading = _reading(objective)
    positions = None
    if hasattr(reading, "at") and info.spatial:
        positions = torch.tensor([reading.at(info.spatial)] * len(wanted))
    return Pictures(info.name, [f"{info.name}:{c}" for c, _ in wanted], torch.cat(images), torch.cat(reached), settings,
                    positions)  # fmt: skip


def _start(param, shape, seed: int, channel: int, copy: int) -> list[torch.Tensor]:
    """One image's starting parameters, drawn from its own (seed, channel, copy): independent of its batch."""
    generator = torch.Generator().manual_seed(((seed * 1_000_003 + channel) * 1_000_003 + copy) & (2**63 - 1))
    return param.init(shape, generator)


def _optimise(graph, layer, channels, starts, objective, param, shape, steps, lr, transforms, size, seed, warmup,
              linear, device, bar, spread=(0.0, 1, None)):  # fmt: skip
    own = torch.tensor(channels)
    generator = torch.Generator().manual_seed(seed)  # the transforms drawn: the same for every batch
    preact = graph.layers[layer].preact is not None  # a ReLU at zero passes no gradient: climb before it
    params = [torch.stack(p).to(device).requires_grad_() for p in zip(*starts)]
    optimiser = torch.optim.Adam(params, lr=lr)
    for step in range(steps):
        optimiser.zero_grad()
        raw = param.image(params, shape)
        image = robust.apply(transforms, raw, generator, size)
        if step < warmup * steps:
            acts = linear(image.to(device))
        else:
            acts = graph.run(image, [layer], grad=True, device=device, preact=preact)[layer]
        score = objective(acts, own.to(device))
        loss = -score.sum()
        if spread[0] > 0 and spread[1] > 1:
            loss = loss + spread[0] * score.detach().abs().mean() * _similarity(raw, *spread[1:])
        loss.backward()
        optimiser.step()
        bar.update(len(channels))
    with torch.no_grad():
        image = param.image(params, shape)
        acts = graph.run(image, [layer], device=device)[layer]
        return image.detach().cpu(), _reading(objective)(acts, own).cpu()


def _similarity(images, copies: int, window) -> torch.Tensor:
    """The summed cosine between the centred receptive-field crops of each neuron's copies (adjacent in the
    batch): what the diversity weight pushes down, in units of the typical score so it scales with the layer."""
    crops = images[window].flatten(1)
    crops = crops - crops.mean(1, keepdim=True)
    crops = torch.nn.functional.normalize(crops, dim=1).view(-1, copies, crops.shape[1])
    gram = crops @ crops.transpose(1, 2)
    return (gram.sum() - gram.diagonal(dim1=1, dim2=2).sum()) / 2


def _reading(objective):
    """The plain reading of the neuron inside ``objective`` (a negative objective's own, unnegated)."""
    while hasattr(objective, "of"):
        objective = objective.of
    return objective


def _linearised(graph, layer: str):
    """``layer``'s pre-activation as a function of the image through the linearised path (every
    nonlinearity read as the identity: the expanded weights' own map)."""
    from circuits.graph.paths import make_path_function

    info = graph.layers[layer]
    source = graph.layers[graph.input_layer].node
    return make_path_function(graph, [source], info.preact or info.node, linearise=True)
