"""Concepts: named sets of toy-world images, built from the latent factors the generator knows.

A *factor* is one latent read as categories (an object's class, its facing, a line's orientation bin). An
*atom* is ``factor=value``; a concept is a conjunction of terms, each term one atom or a disjunction of
values of one factor::

    fish                                   the class factor's values are written bare
    fish AND facing=left
    wedge AND (facing=left OR facing=right)
    line AND angle=45

A concept's *positives* are the images it is true of. Concepts with fewer than ``MIN_POSITIVES`` images in
the data are not scored (their AUROC would be noise), and two concepts true of exactly the same images are
one concept: the one with fewer terms is kept (``facing=left`` rather than ``wedge AND facing=left`` when only
wedges face).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from circuits.errors import UsageError

MIN_POSITIVES = 20
LINE_BINS = [0, 22, 45, 67, 90, 112, 135, 157]  # the planted line detectors' names (22.5° apart)
CASE_FACTORS = ("facing",)  # factors a union neuron may OR over (the same thing, seen two ways)


@dataclass(frozen=True)
class Concept:
    """``terms``: tuple of ``(factor, values)``, values a tuple of one or more strings; sorted, so equal
    concepts compare equal."""

    terms: tuple

    @property
    def size(self) -> int:
        return sum(len(values) for _, values in self.terms)

    def text(self) -> str:
        return " AND ".join(_term_text(factor, values) for factor, values in self.terms)

    def words(self) -> str:
        """Plain words for a label and, through the sanitiser, an identifier: 'fish facing left or right'."""
        parts = []
        for factor, values in self.terms:
            shown = " or ".join(values)
            parts.append(shown if factor == "class" else f"{factor} {shown}")
        return " ".join(parts)

    def positives(self, table: dict) -> np.ndarray:
        keep = np.ones(len(next(iter(table["class"].values()))), bool)
        for factor, values in self.terms:
            keep &= np.any([table[factor][v] for v in values], axis=0)
        return keep

    def without(self, factor: str) -> Concept:
        return Concept(tuple(t for t in self.terms if t[0] != factor))

    def plus(self, factor: str, values) -> Concept:
        return Concept(tuple(sorted([*self.without(factor).terms, (factor, tuple(values))])))

    def has(self, factor: str) -> bool:
        return any(f == factor for f, _ in self.terms)


def _term_text(factor: str, values) -> str:
    atoms = [v if factor == "class" else f"{factor}={v}" for v in values]
    return atoms[0] if len(atoms) == 1 else "(" + " OR ".join(atoms) + ")"


def factors(task: str, labels, latents: dict) -> dict[str, dict[str, np.ndarray]]:
    """``{factor: {value: boolean mask over the images}}`` for every factor of ``task``. A factor can hold
    several values for one image: a wedge's two arms give it two orientations (``angle``)."""
    from circuits.data.toyworld import class_names

    labels = np.asarray(labels)
    out = {"class": {name: labels == i for i, name in enumerate(class_names(task))}}
    facing = np.asarray(latents["facing"])
    if (facing != 0).any():
        out["facing"] = {"left": facing < 0, "right": facing > 0}
    if task == "strokes":
        angle = np.asarray(latents["angle"], float)
        line = labels == 0
        nearest = _nearest(angle, step=22.5, period=180.0)
        out["angle"] = {str(b): line & (nearest == i) for i, b in enumerate(LINE_BINS)}
        for arm in ("45", "135"):  # a wedge's arms lie at 45 and 135 degrees (give or take its tilt)
            out["angle"][arm] = out["angle"][arm] | ~line
    return out


def _nearest(angle: np.ndarray, step: float, period: float) -> np.ndarray:
    """Index of the bin centre (``step * i``) nearest each angle, on a circle of ``period`` degrees."""
    centres = step * np.arange(round(period / step))
    gap = np.abs((angle[:, None] - centres[None, :] + period / 2) % period - period / 2)
    return gap.argmin(axis=1)


def candidates(table: dict[str, dict[str, np.ndarray]], min_positives: int = MIN_POSITIVES) -> list[Concept]:
    """Every atom, every two-value disjunction of one factor, and every conjunction of two terms of
    different factors, with at least ``min_positives`` positives; one concept per distinct set of images."""
    terms = []
    for factor, columns in table.items():
        values = sorted(v for v, mask in columns.items() if mask.any())
        terms += [(factor, (v,)) for v in values]
        terms += [(factor, pair) for pair in itertools.combinations(values, 2) if len(values) > 2]
    concepts = [Concept((t,)) for t in terms]
    concepts += [Concept(tuple(sorted(pair))) for pair in itertools.combinations(terms, 2) if pair[0][0] != pair[1][0]]
    seen: dict[bytes, Concept] = {}
    for concept in sorted(concepts, key=lambda c: (c.size, len(c.terms), c.text())):
        mask = concept.positives(table)
        if min_positives <= mask.sum() <= len(mask) - min_positives:
            seen.setdefault(np.packbits(mask).tobytes(), concept)
    return list(seen.values())


_ATOM = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:=\s*([\w.+-]+))?\s*$")


def parse(text: str, table: dict[str, dict[str, np.ndarray]]) -> Concept:
    """Read ``"fish AND facing=left"``, ``"wedge AND (facing=left OR facing=right)"``, ``"angle=45"``; bare
    words are class names. Unknown factors or values raise a one-line :class:`UsageError` listing the known."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("--concept is empty; write e.g. 'facing=left' or 'fish AND facing=left'")
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        inner = part.strip()
        if inner.startswith("(") and inner.endswith(")"):
            inner = inner[1:-1]
        atoms = [_atom(a, text, table) for a in re.split(r"\s+OR\s+", inner, flags=re.IGNORECASE)]
        if len({f for f, _ in atoms}) != 1:
            raise UsageError(f"concept '{text}': an OR joins values of one factor, e.g. (facing=left OR facing=right)")
        terms.append((atoms[0][0], tuple(sorted({v for _, v in atoms}))))
    if len({f for f, _ in terms}) != len(terms):
        raise UsageError(f"concept '{text}': a factor appears twice; join its values with OR instead")
    return Concept(tuple(sorted(terms)))


def _atom(atom: str, text: str, table) -> tuple[str, str]:
    match = _ATOM.match(atom)
    if not match:
        raise UsageError(f"concept '{text}': cannot read '{atom.strip()}'; write FACTOR=VALUE or a class name")
    factor, value = match.groups()
    if value is None:
        factor, value = "class", factor
    if factor not in table:
        raise UsageError(f"concept '{text}': unknown factor '{factor}'; this data has {', '.join(table)}")
    known = sorted(table[factor])
    if value not in known:
        what = "class" if factor == "class" else f"value of {factor}"
        raise UsageError(f"concept '{text}': unknown {what} '{value}'; use one of {', '.join(known)}")
    return factor, value
