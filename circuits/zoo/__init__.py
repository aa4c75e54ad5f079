"""The model zoo: small networks trained on the toy world, shipped with their weights and model cards.

Every family (``plain-cnn``, ``inception-cnn``, ``resnet-cnn``, ``mlp``, ``curve-cnn``) comes in seeds 0, 1, 2
as ``FAMILY-sSEED``; the bare family name is an alias of seed 0. ``circuits.models.load("zoo:plain-cnn")``
routes here.

- :func:`names` — every loadable name, sorted.
- :func:`load` — a :class:`~circuits.models.LoadedModel` in eval mode, weights read with
  ``torch.load(weights_only=True)`` from package data.
- :func:`card` — the model card as a dict (architecture, seed, task, accuracy, recipe hash, motifs, ...).

Importing this module does not import torch; :func:`load` does.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from circuits.errors import BadSpecError, ModelLoadError, close_matches_hint
from circuits.zoo.recipes import RECIPES, SEEDS

WEIGHTS_DIR = Path(__file__).parent / "weights"
CARDS_DIR = Path(__file__).parent / "cards"

__all__ = ["names", "load", "card", "resolve", "RECIPES", "SEEDS"]


def names() -> list[str]:
    """Every zoo name, sorted: ``FAMILY-sSEED`` for each recipe and seed, and each bare ``FAMILY`` alias."""
    return sorted([*RECIPES, *(f"{family}-s{seed}" for family in RECIPES for seed in SEEDS)])


def resolve(name: str) -> tuple[str, int]:
    """``"plain-cnn-s1"`` -> ``("plain-cnn", 1)``; a bare family name means seed 0."""
    if name in RECIPES:
        return name, 0
    family, sep, seed = name.rpartition("-s")
    if sep and family in RECIPES and seed.isdigit() and int(seed) in SEEDS:
        return family, int(seed)
    raise BadSpecError(f"unknown zoo model '{name}'{close_matches_hint(name, names())} (`circuits zoo list` shows them)")


def canonical(name: str) -> str:
    family, seed = resolve(name)
    return f"{family}-s{seed}"


@cache
def _metadata(canonical_name: str) -> dict:
    path = WEIGHTS_DIR / f"{canonical_name}.json"
    if not path.is_file():
        raise ModelLoadError(
            f"zoo model '{canonical_name}' has no shipped weights ({path.name} is missing); train it with "
            f"`circuits zoo train {canonical_name}`"
        )
    return json.loads(path.read_text())


def card(name: str) -> dict:
    """The model card of ``name`` as a dict: the shipped metadata plus the family card's markdown text.

    Keys include ``name``, ``family``, ``architecture``, ``seed``, ``task``, ``classes``, ``accuracy``,
    ``recipe_hash``, ``recipe``, ``weights_sha256``, ``params``, ``input_shape``, ``motifs`` and
    ``card_markdown``.
    """
    key = canonical(name)
    info = dict(_metadata(key))
    family = info["family"]
    md = CARDS_DIR / f"{family}.md"
    info["card_markdown"] = md.read_text() if md.is_file() else ""
    if name != key:
        info["alias_of"] = key
    return info


def load(name: str):
    """Load zoo model ``name`` in eval mode (see :func:`names`)."""
    import torch

    from circuits.models import LoadedModel
    from circuits.zoo.train import build

    key = canonical(name)
    info = card(name)
    family, _ = resolve(name)
    module = build(RECIPES[family])
    path = WEIGHTS_DIR / f"{key}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)
    except FileNotFoundError:
        raise ModelLoadError(f"zoo weights '{path.name}' are missing; train them with `circuits zoo train {key}`") from None
    except Exception as exc:
        raise ModelLoadError(f"cannot load zoo weights '{path.name}': {type(exc).__name__}: {exc}") from None
    module.eval()
    info.pop("card_markdown", None)
    return LoadedModel(module, spec=f"zoo:{name}", input_shape=tuple(info["input_shape"]), labels=shipped_labels(info),
                       info=info)


def shipped_labels(info: dict) -> dict[str, str]:
    """``{"LAYER:CHANNEL": label}`` from a model's metadata: the automatic labels measured at build time."""
    return {n["neuron"]: n["label"] for n in info.get("labels", {}).get("neurons", [])}
