"""What a picture is optimised for, as values: each scores every image of a batch for its own neuron.

A batch visualises many neurons at once: image ``b`` belongs to channel ``channels[b]`` of one layer, and an
objective turns that layer's activations ``[B, C, H, W]`` (or ``[B, C]``) into one score per image, to be
maximised. Images do not interact, so one batched optimisation gives each neuron exactly the picture a run
of its own would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _own(acts: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """Each image's own channel: ``[B, H, W]`` (or ``[B]`` for a dense layer)."""
    return acts[torch.arange(len(channels), device=acts.device), channels.to(acts.device)]


@dataclass(frozen=True)
class Channel:
    """The channel's mean over every position: a pattern that fills the image (a texture)."""

    name = "channel"

    def __call__(self, acts, channels):
        own = _own(acts, channels)
        return own.flatten(1).mean(1) if own.dim() > 1 else own

    def to_dict(self):
        return {"name": self.name}


@dataclass(frozen=True)
class Neuron:
    """The channel at one position (default: the map's centre): the neuron itself, inside its receptive
    field, the picture comparable with its top dataset examples' crops."""

    position: tuple[int, int] | None = None
    name = "neuron"

    def at(self, shape) -> tuple[int, ...]:
        return tuple(self.position) if self.position is not None else tuple(d // 2 for d in shape)

    def __call__(self, acts, channels):
        own = _own(acts, channels)
        if own.dim() == 1:
            return own
        y, x = self.at(own.shape[1:])
        return own[:, y, x]

    def to_dict(self):
        return {"name": self.name, "position": None if self.position is None else list(self.position)}


@dataclass(frozen=True)
class Negative:
    """What suppresses the neuron most: another objective, minimised."""

    of: Channel | Neuron = Channel()
    name = "negative"

    def __call__(self, acts, channels):
        return -self.of(acts, channels)

    def to_dict(self):
        return {"name": self.name, "of": self.of.to_dict()}

