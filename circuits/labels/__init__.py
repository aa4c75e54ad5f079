"""Names for neurons: automatic labels from the toy world's known concepts, and queries by concept or by
example images (docs/labels.md)."""

from circuits.labels.find import find_neurons
from circuits.labels.label import Labels, NeuronLabel, label_neurons

__all__ = ["Labels", "NeuronLabel", "find_neurons", "label_neurons"]
