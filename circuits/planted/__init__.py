"""Planted circuits: networks built from a declarative spec, so their circuits are known exactly.

They are the oracle for circuit extraction, motif detection and reverse compilation: compile a spec, run
the tools on the module, and compare what they find with what the spec says.

    compile(spec)          -> nn.Module with exactly the spec's weights (keeps ``.spec``)
    names()                -> the ready specs' names, sorted   (``circuits planted list``)
    get_spec(name)         -> PlantedSpec
    load(name)             -> LoadedModel, as ``planted:NAME`` loads it
    load_spec(path|text|dict) -> PlantedSpec from YAML or JSON
    effective_weights(layer), effective_bias(layer) -> the pre-activation's exact linear map (BN folded)

See docs/planted.md for the spec format and the ready specs.
"""

from __future__ import annotations

from circuits.errors import BadSpecError, close_matches_hint
from circuits.planted.build import PlantedConcat, PlantedLayer, PlantedNet, compile
from circuits.planted.library import LIBRARY
from circuits.planted.spec import (
    BatchNorm,
    Input,
    InputSpec,
    Layer,
    Neuron,
    PlantedSpec,
    effective_bias,
    effective_weights,
    load_spec,
)

__all__ = [
    "BatchNorm",
    "Input",
    "InputSpec",
    "Layer",
    "Neuron",
    "PlantedConcat",
    "PlantedLayer",
    "PlantedNet",
    "PlantedSpec",
    "compile",
    "effective_bias",
    "effective_weights",
    "get_spec",
    "load",
    "load_spec",
    "names",
]


def names() -> list[str]:
    """The ready specs' names, sorted (``lines``, ``union``, ...)."""
    return sorted(LIBRARY)


def get_spec(name: str) -> PlantedSpec:
    """A fresh copy of the ready spec called ``name``."""
    if name not in LIBRARY:
        raise BadSpecError(
            f"unknown planted model '{name}'{close_matches_hint(name, LIBRARY)} (`circuits planted list` shows them)"
        )
    return LIBRARY[name]()


def load(name: str):
    """The ready spec ``name`` (or a YAML/JSON spec file, or a ``build`` output's ``.spec.json``) compiled,
    as a :class:`circuits.models.LoadedModel` (``planted:NAME``, ``planted:my.yaml``)."""
    from pathlib import Path

    from circuits.models.loaded import LoadedModel

    spec = load_spec(Path(name)) if name not in LIBRARY and Path(name).is_file() else get_spec(name)
    return LoadedModel(
        compile(spec),
        spec=f"planted:{name}",
        input_shape=spec.input_shape,
        labels=spec.labels(),
        info={"planted_spec": spec.to_dict()},
    )
