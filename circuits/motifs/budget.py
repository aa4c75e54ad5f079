"""Memory of a motif scan: a byte-budgeted cache, and the estimate checked before a layer is touched.

On a 224-pixel network one layer's expanded kernels to the input are hundreds of MB (MobileNetV2's
``features.12.conv.0``: 576 neurons x 3 x 203 x 203, 285 MB) and a scan visits dozens of layers, so the
context cannot keep everything it computed: each of its caches keeps what fits in
``CIRCUITS_MOTIF_CACHE_BYTES`` (512 MiB; derived results a quarter of that), least recently used out first.
Dropping an entry costs time only; it is computed again, identically.

Before a scan starts, :func:`estimate` bounds what one group of layers needs at once (its kernels, their
high-passed copy, the transformed blocks in flight, and the activations when there are probe images),
and :func:`check` refuses a layer over ``CIRCUITS_MAX_MOTIF_BYTES`` (8 GiB) with the figure and the way out.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict

import torch

from circuits.limits import GIB, check_size, limit

CACHE_BYTES = GIB // 2
MAX_BYTES = 8 * GIB
KERNEL_COPIES = 5  # the kernels, their high-passed copy, the blocks in flight, and tracing's own working set
ACTIVATION_COPIES = 8  # maps on the images and on transformed images, both blurred, and the float64 pair


def nbytes(value) -> int:
    """Bytes of the tensors in ``value`` (tensors, tuples, lists, dicts and dataclasses, recursively)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


class BudgetCache:
    """A dict that forgets its least recently used entries once they hold more than ``budget`` bytes.

    The newest entry is always kept, however large: whoever stored it is about to use it.
    """

    def __init__(self, budget: int | None = None):
        self.budget = limit("MOTIF_CACHE_BYTES", CACHE_BYTES) if budget is None else budget
        self._items: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self.total = 0

    def __contains__(self, key) -> bool:
        return key in self._items

    def __getitem__(self, key):
        value = self._items[key]
        self._items.move_to_end(key)
        return value

    def __setitem__(self, key, value) -> None:
        if key in self._items:
            self.total -= self._sizes.pop(key)
            del self._items[key]
        size = nbytes(value)
        self._items[key] = value
        self._sizes[key] = size
        self.total += size
        while self.total > self.budget and len(self._items) > 1:
            self._forget_oldest()

    def make_room(self, size: int) -> None:
        """Forget the oldest entries until ``size`` more bytes fit: called before a large result is made,
        so the entries it will replace are not held while it is being made."""
        while self._items and self.total + size > self.budget:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        old, _ = self._items.popitem(last=False)
        self.total -= self._sizes.pop(old)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self._sizes.clear()
        self.total = 0


def kernel_bytes(graph, layers: list[str]) -> int:
    """At most the bytes of ``layers``' expanded kernels to the input (a receptive field is cut at the border)."""
    return sum(graph.layers[name].channels for name in layers) * math.prod(graph.input_shape) * 4


def activation_bytes(graph, layers: list[str], images: int) -> int:
    """The bytes of ``layers``' activations (channels concatenated) on ``images`` probe images."""
    channels = sum(graph.layers[name].channels for name in layers)
    return images * channels * math.prod(graph.layers[layers[0]].shape[1:]) * 4


def estimate(graph, layers: list[str], images: int = 0, weights: bool = True) -> int:
    """Bytes one group of ``layers`` needs at once, at most: its kernels are bounded by the input image
    (a receptive field is cut at the border), its activations by the maps' sizes."""
    total = KERNEL_COPIES * kernel_bytes(graph, layers) if weights else 0
    return total + ACTIVATION_COPIES * activation_bytes(graph, layers, images)


def check(graph, groups: list[list[str]], images: int = 0, weights: bool = True) -> None:
    """Refuse the scan before it starts when its largest group would pass ``CIRCUITS_MAX_MOTIF_BYTES``,
    with that group's figure: raising the limit to it lets the whole scan run."""
    if not groups:
        return
    need, layers = max((estimate(graph, g, images, weights), g) for g in groups)
    size = "x".join(str(s) for s in graph.input_shape)
    count = sum(graph.layers[n].channels for n in layers)
    what = (f"the motif scan of layer '{','.join(layers)}' ({count} neurons' kernels on a {size} input"
            f"{f', {images} images' if images else ''})")  # fmt: skip
    check_size(what, need, "MAX_MOTIF_BYTES", MAX_BYTES,
               advice="scan another --layer, a smaller --input-shape or fewer images")
