"""circuits: read a trained network like a circuit board.

The public API is small and re-exported here lazily, so that ``import circuits`` (and the catalog and CLI
fast paths) do not import torch:

    load(spec)            -> nn.Module               (circuits.models)
    layers(model, ...)    -> NeuronGraph              (circuits.graph)
"""

__version__ = "0.1.0"

_LAZY = {
    "load": ("circuits.models", "load"),
    "layers": ("circuits.graph", "build_graph"),
    "NeuronGraph": ("circuits.graph", "NeuronGraph"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'circuits' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
