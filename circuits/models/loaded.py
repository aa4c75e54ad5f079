"""A loaded model plus what the tools need to know about it (spec, example input shape, labels)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn


def weights_hash(model: nn.Module) -> str:
    """sha256 of every parameter and buffer (name, dtype, shape, bytes) in name order.

    Identifies a model in provenance and in the catalog: the same weights give the same hash whatever file
    or factory they came from.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(str(tuple(t.shape)).encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class LoadedModel:
    """An ``nn.Module`` with the facts that came with its spec.

    ``input_shape`` is one example input without the batch dimension, e.g. ``(3, 32, 32)``; ``labels`` maps
    ``"layer:channel"`` to a human label where the model's source knows one (planted and zoo models do).
    ``preprocess`` is ``{"mean": [...], "std": [...]}`` per input channel where the model says how its
    images are normalised (a ``preprocess`` attribute on the module); probe images in [0, 1] are mapped
    through it before they reach the model.
    """

    module: nn.Module
    spec: str
    input_shape: tuple[int, ...] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    preprocess: dict | None = None
    _hash: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec

    @property
    def trained_on(self) -> str | None:
        """The data family the model was made for (``toyworld:objects``, ``toyworld:strokes``), or ``None``
        for a model from outside the project: measuring such a model on toy-world images is a choice the
        user makes with ``--data``, never a default."""
        if self.spec.startswith("zoo:"):
            return f"toyworld:{self.info.get('task', 'objects')}"
        if self.spec.startswith("planted:"):
            return "toyworld:strokes"
        return None

    @property
    def weights_hash(self) -> str:
        if self._hash is None:
            self._hash = weights_hash(self.module)
        return self._hash
