"""Circuit agreement: does a picture drive its neuron the way natural images do?

An optimised picture can reach a huge activation through inputs that natural images never use: Geirhos et
al. (2023) build networks whose pictures show anything while their behaviour on natural images is
unchanged. So each picture is checked against the neuron's natural top examples *on the neuron's own
circuit*: the attribution of its pre-activation to each of its direct inputs (gradient x input, summed
over the map), at the position where the neuron is strongest in the image. The path into a pre-activation
is linear (max pooling aside, which is piecewise linear), so these attributions plus the bias are the
pre-activation exactly: they say how much each input contributed, not an approximation of it.

- ``agreement``: the cosine between the picture's attribution vector and the mean of the top examples'
  unit attribution vectors, in [-1, 1]. Near 1, the picture drives the neuron through the inputs natural
  images use, in the same proportions; near 0, through other inputs (a path natural images leave off, or
  inputs they never light together); below 0, through inputs that natural images use against it.
- ``relative_activation``: the picture's pre-activation at its strongest position over the best natural
  example's. Far above 1 *with* low agreement is the signature of a picture the data does not explain.

A first layer's only input is the image, and one number per colour channel would agree trivially; there
the inputs are the pixels of the receptive field (the attribution map cropped around the scoring
position), so a line detector's picture agrees when its drive falls along the same line as the examples'.
Pixels are measured from the data's mean pixel, not from black: from black, gradient x input is the kernel
times the image, and any bright patch (a uniform grey one too) would look like the kernel itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from circuits import arguments
from circuits.errors import UsageError

ON = 0.01  # a best natural pre-activation under 1% of the layer's strongest counts as never switched on


@dataclass
class Agreement:
    """Per picture (``neurons[i]`` is picture ``i``'s neuron): ``agreement`` and ``relative_activation``
    [N] (NaN where no natural example switches the neuron on: its best pre-activation is below ``ON``
    times the layer's strongest), ``activation`` [N] (the picture's
    pre-activation where it was read), and the vectors compared, ``picture`` and
    ``natural`` [N, len(inputs)]; ``agreement`` is NaN where either vector is zero (every input of the
    neuron off, as on data that never reaches it), over ``inputs`` (``LAYER:CHANNEL`` names, or ``pixel:C,Y,X`` offsets in
    the receptive field for a first layer)."""

    neurons: list[str]
    agreement: torch.Tensor
    relative_activation: torch.Tensor
    activation: torch.Tensor
    inputs: list[str]
    picture: torch.Tensor
    natural: torch.Tensor

    def to_dicts(self) -> list[dict]:
        """One ``{"neuron", "agreement", "relative_activation"}`` per picture, NaN as ``None`` (JSON)."""
        def number(x):
            return None if x != x else round(float(x), 6)

        return [{"neuron": n, "agreement": number(a), "relative_activation": number(r)}
                for n, a, r in zip(self.neurons, self.agreement.tolist(), self.relative_activation.tolist())]


def circuit_agreement(model, pictures, data, *, k: int = 9, examples=None, batch_size: int = 256,
                      device=None) -> Agreement:  # fmt: skip
    """How far each of ``pictures`` (from :func:`~circuits.featvis.visualise`) drives its neuron through the
    inputs its ``k`` natural top examples in ``data`` (a tensor or a data spec) use.

    ``examples``: the layer's :func:`~circuits.featvis.dataset_examples` when already made (the top ones, at
    least the pictures' channels), to save a pass over the data."""
    from circuits.data.spec import load_data
    from circuits.featvis.examples import dataset_examples
    from circuits.featvis.optimise import Pictures
    from circuits.graph import build_graph
    from circuits.graph.run import check_data

    graph = build_graph(model)
    if not isinstance(pictures, Pictures):
        raise UsageError(f"pictures must be what visualise() returns, got {arguments.shown(pictures)}")
    k = arguments.integer(k, "k", minimum=1)
    images = load_data(data, graph.input_shape) if isinstance(data, str) else check_data(graph, data)
    channels = [int(n.rpartition(":")[2]) for n in pictures.neurons]
    if examples is None:
        examples = dataset_examples(graph, pictures.layer, images, k=k, channels=sorted(set(channels)),
                                    batch_size=batch_size, device=device)  # fmt: skip
    if not examples.top or examples.layer != pictures.layer or not set(channels) <= set(examples.channels):
        raise UsageError(f"the examples must be the top examples of {pictures.layer} for every picture's channel")
    row = {c: i for i, c in enumerate(examples.channels)}
    rows = torch.tensor([row[c] for c in channels])
    baseline = images.mean(dim=(0, 2, 3))  # the data's mean pixel: see the module docstring
    picture, value, inputs = attributions(graph, pictures.layer, pictures.images, channels, pictures.positions,
                                          baseline)  # fmt: skip
    shown = sorted(set(channels))
    n_ex = examples.index.shape[1]
    ex_rows = torch.tensor([row[c] for c in shown])
    ex_channels = [c for c in shown for _ in range(n_ex)]
    ex_images = images[examples.index[ex_rows].flatten()]
    ex_positions = examples.position[ex_rows].flatten(0, 1)
    natural, _, _ = attributions(graph, pictures.layer, ex_images, ex_channels, ex_positions, baseline)
    natural = _unit(natural).view(len(shown), n_ex, -1).mean(1)  # each example counts once
    natural = natural[torch.tensor([shown.index(c) for c in channels])]
    cosine = torch.nn.functional.cosine_similarity(picture, natural, dim=1, eps=1e-12)
    undefined = (picture.norm(dim=1) == 0) | (natural.norm(dim=1) == 0)  # nothing reaches the neuron
    cosine = torch.where(undefined, torch.full_like(cosine, float("nan")), cosine)
    best = examples.value[rows, 0]
    on = best > ON * examples.value[:, 0].abs().max()  # a neuron no natural image switches on has no scale
    relative = torch.where(on, value / best.clamp(min=1e-12), torch.full_like(value, float("nan")))
    return Agreement(list(pictures.neurons), cosine, relative, value, inputs, picture, natural)


def attributions(graph, layer: str, images: torch.Tensor, channels: list[int], positions=None, baseline=None):
    """Each image's attribution of its own channel's pre-activation to the layer's direct inputs.

    ``channels[i]`` is image ``i``'s neuron; ``positions`` [N, 2] where it is read (``None``: its strongest
    position in the image). ``baseline`` [C]: for a first layer, the pixel value each colour channel's
    attribution is measured from (gradient x (pixel - baseline)); 0 without it. Returns (vectors [N, I],
    the pre-activation read [N], the input names)."""
    from circuits.featvis.examples import field_crops
    from circuits.graph.paths import make_path_function, path_inputs
    from circuits.graph.run import node_values

    name, channels = _resolved(graph, layer, channels)
    info = graph.layers[name]
    if not info.sources:
        raise UsageError(f"layer '{layer}' has no inputs to attribute to (it is the model's input)")
    sources = [graph.layers[s].node for s in info.sources]
    target = info.preact or info.node
    context = node_values(graph, images, keep=path_inputs(graph, sources, target) | set(sources))
    values = [context[s].detach().requires_grad_() for s in sources]
    with torch.enable_grad():
        out = make_path_function(graph, sources, target, context=context)(*values)
        own = out[torch.arange(len(images)), torch.tensor(channels)]  # [N, *spatial]
        spatial = own.dim() > 1
        if spatial and positions is None:
            flat = own.flatten(1).argmax(1)
            positions = torch.stack([flat // own.shape[2], flat % own.shape[2]], dim=1)
        read = own[torch.arange(len(images)), positions[:, 0], positions[:, 1]] if spatial else own
        grads = torch.autograd.grad(read.sum(), values)
    contributions = [(g * v).detach() for g, v in zip(grads, values)]
    if info.sources == [graph.input_layer] and spatial:
        if baseline is not None:  # a uniform image then attributes nothing, whatever the kernel
            contributions[0] = contributions[0] - grads[0] * torch.as_tensor(baseline).view(1, -1, 1, 1)
        crops = field_crops(graph, name, contributions[0], positions)
        c, h, w = crops.shape[1:]
        return crops.flatten(1), read.detach(), [f"pixel:{i},{y},{x}" for i in range(c) for y in range(h) for x in range(w)]
    parts = [c.flatten(2).sum(2) if c.dim() > 2 else c for c in contributions]
    names = [f"{s}:{i}" for s, c in zip(info.sources, parts) for i in range(c.shape[1])]
    return torch.cat(parts, dim=1), read.detach(), names


def _resolved(graph, layer: str, channels: list[int]) -> tuple[str, list[int]]:
    """A concat alias's channels, as the one part layer that computes them all."""
    resolved = [graph.resolve(graph.layer(layer).name, c) for c in channels]
    names = {n for n, _ in resolved}
    if len(names) > 1:
        raise UsageError(f"these channels of '{layer}' come from several layers ({', '.join(sorted(names))}); "
                         "ask for one part at a time")  # fmt: skip
    return resolved[0][0], [c for _, c in resolved]


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
