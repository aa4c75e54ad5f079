"""Dataset examples: the images that drive each neuron of a layer hardest (and least), with the crop the
neuron sees.

People predict what a neuron does better from its natural top examples than from optimised pictures
(Borowski et al., 2021), so every picture should sit beside them. One pass over the data serves a whole
layer: each batch's activations update every channel's running top and bottom ``k`` and are dropped,
so memory holds one batch of activations, not the data's.

A neuron of a spatial layer is scored by its strongest position in each image (its max over the map), and
the example's crop is that position's receptive field (:func:`circuits.trace.kernels.receptive_field`),
zero-padded where the field leaves the image, so every crop of a layer has one size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from circuits import arguments
from circuits.errors import UsageError
from circuits.trace.kernels import receptive_field


@dataclass
class Examples:
    """Per channel of ``layer``: ``index`` [C, k] into the data, ``value`` [C, k] (the pre-activation where
    the layer has one), ``position`` [C, k, 2]
    (the map position that scored, or -1 for a dense layer), ``crops`` [C, k, channels, h, w]; ``top`` says
    whether these are the strongest (True) or the weakest (False)."""

    layer: str
    channels: list[int]
    index: torch.Tensor
    value: torch.Tensor
    position: torch.Tensor
    crops: torch.Tensor
    top: bool = True


def dataset_examples(model, layer: str, data, k: int = 9, channels=None, *, bottom: bool = False,
                     batch_size: int = 256, device=None) -> Examples:  # fmt: skip
    """The ``k`` images of ``data`` (a tensor or a data spec) that drive each channel of ``layer`` hardest,
    or least with ``bottom=True``, with their receptive-field crops.

    Images are ranked by the neuron's pre-activation where the layer has one (its strongest position in
    the image): after a ReLU most images tie at zero, and the bottom examples would be arbitrary. Ties keep
    the data's order."""
    from circuits.data.spec import load_data
    from circuits.graph import build_graph
    from circuits.graph.run import check_data

    graph = build_graph(model)
    info = graph.layer(layer)
    images = load_data(data, graph.input_shape) if isinstance(data, str) else check_data(graph, data)
    channels = info.channel_list(channels)
    k = arguments.integer(k, "k")
    bottom = arguments.flag(bottom, "bottom")
    batch_size = arguments.integer(batch_size, "batch_size", minimum=1)
    if not 1 <= k <= len(images):
        raise UsageError(f"k must be between 1 and the {len(images)} images of the data, got {k}")
    sign = -1.0 if bottom else 1.0
    preact = info.preact is not None
    best_value = torch.full((len(channels), 0), 0.0)
    best_index = torch.zeros((len(channels), 0), dtype=torch.long)
    best_flat = torch.zeros((len(channels), 0), dtype=torch.long)
    for first in range(0, len(images), batch_size):
        batch = images[first : first + batch_size]
        acts = graph.run(batch, [info.name], device=device, preact=preact)[info.name][:, channels]
        flat = acts.flatten(2) if acts.dim() > 2 else acts[..., None]
        score, where = flat.max(dim=2)  # [N, C]: each image's strongest position per channel
        value = torch.cat([best_value, sign * score.T], dim=1)
        index = torch.cat([best_index, torch.arange(first, first + len(acts)).expand(len(channels), -1)], dim=1)
        spot = torch.cat([best_flat, where.T], dim=1)
        keep = value.sort(dim=1, descending=True, stable=True).indices[:, :k]  # ties: the earlier image first
        best_value, best_index, best_flat = value.gather(1, keep), index.gather(1, keep), spot.gather(1, keep)
    spatial = tuple(info.shape[1:])
    if len(spatial) == 2:
        position = torch.stack([best_flat // spatial[1], best_flat % spatial[1]], dim=-1)
    else:
        position = torch.full((*best_flat.shape, 2), -1, dtype=torch.long)
    crops = _crops(graph, info.name, images, best_index, position)
    return Examples(info.name, channels, best_index, sign * best_value, position, crops, top=not bottom)


def field_crops(graph, layer: str, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``[N, C, h, w]``: image ``i``'s receptive-field crop at ``positions[i]`` (a map position of ``layer``)."""
    return _crops(graph, layer, images, torch.arange(len(images))[:, None], positions[:, None])[:, 0]


def _crops(graph, layer, images, index, position) -> torch.Tensor:
    """Each example's receptive-field crop at its scoring position (the whole image for a dense layer)."""
    if (position < 0).any():
        return images[index]
    centre = tuple(d // 2 for d in graph.layer(layer).shape[1:])
    field = receptive_field(graph, layer, centre)
    (y0, x0), (y1, x1), _ = field
    cy, cx = centre
    sy, sx = _stride(graph, layer, field)
    h, w = y1 - y0, x1 - x0
    padded = F.pad(images, (w, w, h, h))  # a field that leaves the image reads zeros there
    out = images.new_zeros(*index.shape, images.shape[1], h, w)
    for c in range(index.shape[0]):
        for j in range(index.shape[1]):
            py, px = (int(v) for v in position[c, j])
            top, left = y0 + (py - cy) * sy + h, x0 + (px - cx) * sx + w  # the field moves by the stride
            out[c, j] = padded[index[c, j], :, top : top + h, left : left + w]
    return out


def _stride(graph, layer, centre_field) -> tuple[int, int]:
    """Input pixels per map pixel: measured from the centre's field and its neighbour's, or the size
    ratio where either is cut by the border."""
    shape = graph.layer(layer).shape[1:]
    centre = tuple(d // 2 for d in shape)
    if all(d > 1 for d in centre):
        b = receptive_field(graph, layer, tuple(d - 1 for d in centre))
        if not centre_field[2] and not b[2]:
            return tuple(p - q for p, q in zip(centre_field[0], b[0]))
    return tuple(max(1, i // m) for i, m in zip(graph.input_shape[1:], shape))
