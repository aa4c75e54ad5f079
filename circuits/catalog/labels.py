"""Automatic neuron labels: check what ``Catalog.add_labels`` is given, and spell its evidence.

An automatic label is a claim a tool makes about a neuron ("fires on curves") with what backs it: the
concept it was matched to, a score, and the evidence (the method, its measurements such as AUROC or IoU and
the control's score, the probe data's spec, the tool's version). The catalog keeps that as JSON beside the
label, in ``neurons.label_evidence`` (the shown label's) and ``label_history.evidence`` (every label's):
``{"concept": ..., "evidence": {...}, "score": ...}``, canonical (key-sorted, compact). A label a person writes
(``Catalog.label``, source ``"user"``) has no evidence and is the stronger claim: an automatic label never
replaces it, it is only recorded in the history.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from circuits.arguments import shown
from circuits.catalog.payload import BadNeuronError, canonical, split_neuron
from circuits.errors import UsageError, close_matches_hint

KEYS = ("neuron", "label", "score", "concept", "evidence")
USER = "user"  # the source of a label a person wrote (Catalog.label): it beats every tool's
_SHAPE = "{" + ", ".join(KEYS) + "}"


class LabelError(UsageError, ValueError):
    """Labels that ``add_labels`` cannot store as given: the input is at fault (exit 2), nothing is written."""


@dataclass(frozen=True)
class Label:
    """One checked automatic label, before the model is known."""

    layer: str
    channel: int
    text: str
    evidence_json: str  # canonical {"concept", "evidence", "score"}


def check_source(source) -> str:
    """The tool's name, as stored in ``label_source``; ``"user"`` is kept for labels a person writes."""
    if not isinstance(source, str) or not source.strip():
        raise LabelError(f"source names the tool that made the labels (for example 'circuits label'), got {shown(source)}.")
    if source.strip() == USER:
        raise LabelError("source 'user' is kept for labels a person writes (Catalog.label, `circuits catalog label`); "
                         "name the tool that made these labels instead (for example 'circuits label').")  # fmt: skip
    return source.strip()


def check_labels(labels) -> list[Label | None]:
    """Every label dict checked (exactly the keys of ``KEYS``), in input order; ``None`` for an exact repeat of
    an earlier label of the same neuron. Bad input raises :class:`LabelError` naming ``labels[i]``."""
    if not isinstance(labels, (list, tuple)):
        raise LabelError(f"labels must be a list of dicts {_SHAPE}, got {type(labels).__name__}.")
    checked, seen = [], {}
    for index, label in enumerate(labels):
        one = _check(index, label)
        first = seen.setdefault((one.layer, one.channel), (index, one))
        if first[1] != one:
            raise LabelError(f"labels[{index}] and labels[{first[0]}] both label {one.layer}:{one.channel}, "
                             "differently; give one label per neuron.")  # fmt: skip
        checked.append(one if first[0] == index else None)
    return checked


def _check(index: int, label) -> Label:
    where = f"labels[{index}]"
    if not isinstance(label, dict):
        raise LabelError(f"{where} must be a dict {_SHAPE}, got {type(label).__name__}.")
    extra = sorted(str(k) for k in label if k not in KEYS)
    if extra:  # first: a misspelt key is also a missing one
        raise LabelError(f"{where} has an unknown key {extra[0]!r}; each label is a dict of exactly {_SHAPE}"
                         f"{close_matches_hint(extra[0], KEYS) or '.'}")  # fmt: skip
    missing = [k for k in KEYS if k not in label]
    if missing:
        raise LabelError(f"{where} lacks {missing[0]!r}; each label is a dict of exactly {_SHAPE}.")
    neuron = label["neuron"]
    if not isinstance(neuron, str):
        raise LabelError(f"{where}'s neuron must be a 'LAYER:CHANNEL' string (for example 'conv3:12'), got {shown(neuron)}.")
    try:
        layer, channel = split_neuron(neuron, f"{where}'s neuron")
    except BadNeuronError as exc:
        raise LabelError(str(exc)) from None
    text = _text(label["label"], f"{where}'s label", "the words shown for the neuron")
    concept = _text(label["concept"], f"{where}'s concept", "the name of the concept the neuron was matched to")
    score = _score(label["score"], f"{where}'s score")
    evidence = label["evidence"]
    if not isinstance(evidence, dict):
        raise LabelError(f"{where}'s evidence must be a dict saying what backs the label (method, auroc, data, tool "
                         f"version, ...), got {type(evidence).__name__}.")  # fmt: skip
    try:
        evidence_json = canonical({"concept": concept, "evidence": evidence, "score": score})
    except (TypeError, ValueError, RecursionError) as exc:
        raise LabelError(f"{where}'s evidence is not plain JSON ({exc}); give numbers (float(x) for numpy's), "
                         "strings, booleans, None, lists and dicts only.") from None  # fmt: skip
    bad_key = _non_text_key(evidence)  # after canonical: it refused circular and too deep values
    if bad_key is not None:
        raise LabelError(f"{where}'s evidence has the key {shown(bad_key)}, which JSON would turn into the string "
                         f"{str(bad_key)[:40]!r}; use string keys.")  # fmt: skip
    return Label(layer, channel, text, evidence_json)


def _score(value, what: str) -> float:
    try:
        score = None if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)
    except OverflowError:  # an integer past the float range
        score = None
    if score is None or not math.isfinite(score):
        raise LabelError(f"{what} must be a finite number (how well the neuron matches its concept), got {shown(value)}.")
    return score


def _text(value, what: str, meaning: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LabelError(f"{what} must be non-empty text ({meaning}), got {shown(value)}.")
    return value.strip()


def _non_text_key(value):
    """The first dict key (at any depth) that is not a string, or ``None``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return key
            found = _non_text_key(item)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            found = _non_text_key(item)
            if found is not None:
                return found
    return None
