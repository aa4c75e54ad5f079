"""Automatic neuron labels: the known concept each neuron picks out best, scored, and a label only where the
score clears a bar that chance does not.

For every neuron of the chosen layers, every candidate concept of the data (:mod:`circuits.labels.concepts`)
is scored by AUROC; the label is the concept with the fewest OR-alternatives among those whose AUROC is at
least ``bar`` (0.9 by default), the highest AUROC among equals (see :func:`_best`), and a ReLU neuron must
fire on at least ``MIN_FIRING`` of the concept's images. Beside it: the concept's IoU with the neuron's
thresholded map where the data has masks, and a *control*: the best AUROC of any concept after the images'
factors are shuffled among the images, which is what chance reaches on this data with this many concepts
(0.51-0.57 on the zoo and the planted nets).

A **union** label is a disjunction over a case factor (facing): when the best concept C leaves facing open and
each facing on its own, C AND facing=v, clears the bar against the images outside C while the neuron cannot
tell the facings apart (AUROC between them within ``INVARIANCE``, 0.15, of 0.5), the label is
``C AND (facing=left OR facing=right)``: what a pose-invariant neuron that ORs a left and a right detector is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from circuits import arguments
from circuits.errors import UsageError
from circuits.labels.concepts import CASE_FACTORS, MIN_POSITIVES, Concept, candidates, factors
from circuits.labels.selectivity import auroc, auroc_between

BAR = 0.9
TIE = 0.005
INVARIANCE = 0.15  # a union prefers neither case by more than a third of how far each case clears chance (0.9)
CONTROL_SEED = 0
METHOD = "auroc-of-max-preactivation"
MIN_FIRING = 0.5  # a label needs the neuron active (above zero after its ReLU) on half the concept's images
RECTIFIERS = {"relu", "relu6"}


@dataclass
class NeuronLabel:
    """One neuron's best concept and its scores; ``label`` is None where ``score`` is under the bar."""

    neuron: str
    concept: str
    words: str
    score: float
    control: float
    iou: float | None = None
    fires: float = 1.0  # fraction of the concept's images on which the neuron's activation is above zero
    cases: dict = field(default_factory=dict)  # union labels: case value -> AUROC against outside the concept
    between: float | None = None  # union labels: AUROC of one case against the other
    labelled: bool = False

    @property
    def label(self) -> str | None:
        return self.words if self.labelled else None

    def to_dict(self) -> dict:
        out = {"neuron": self.neuron, "label": self.label, "score": round(self.score, 4), "concept": self.concept,
               "control": round(self.control, 4), "iou": None if self.iou is None else round(self.iou, 4),
               "fires": round(self.fires, 4)}  # fmt: skip
        if self.cases:
            out["cases"] = {k: round(v, 4) for k, v in self.cases.items()}
            out["between"] = round(self.between, 4)
        return out


@dataclass
class Labels:
    """Every scored neuron (labelled or not) in layer order, the bar, and the data they were scored on."""

    neurons: list[NeuronLabel]
    layers: list[str]
    bar: float
    data: str
    task: str
    concepts: int

    def labelled(self) -> list[NeuronLabel]:
        return [n for n in self.neurons if n.labelled]

    def coverage(self) -> dict[str, dict]:
        """Per layer: neurons labelled out of neurons scored."""
        out = {}
        for layer in self.layers:
            mine = [n for n in self.neurons if n.neuron.rpartition(":")[0] == layer]
            done = sum(n.labelled for n in mine)
            out[layer] = {"labelled": done, "neurons": len(mine), "fraction": round(done / len(mine), 4) if mine else 0.0}
        return out

    def evidence(self, entry: NeuronLabel) -> dict:
        """What a catalog keeps beside an automatic label (``Catalog.add_labels``)."""
        from circuits import __version__

        return {"method": METHOD, "auroc": round(entry.score, 4), "control_auroc": round(entry.control, 4),
                "fires": round(entry.fires, 4),
                "iou": None if entry.iou is None else round(entry.iou, 4), "bar": self.bar, "data": self.data,
                "cases": {k: round(v, 4) for k, v in entry.cases.items()}, "tool_version": __version__}  # fmt: skip


def default_data(loaded) -> str:
    """The data a model's labels are scored on when none is given: its zoo task, strokes for planted nets."""
    task = getattr(loaded, "info", None) and loaded.info.get("task")
    if not task and str(getattr(loaded, "spec", "")).startswith("planted:"):
        task = "strokes"
    return f"toyworld:{task or 'objects'}:2000:1"


def label_neurons(model, data: str = "toyworld:2000:1", layers=None, bar: float = BAR, *, batch_size: int = 256,
                  device=None, progress=None) -> Labels:  # fmt: skip
    """Label the neurons of ``layers`` (default: every layer with weights) of ``model`` from the concepts of
    the toy-world ``data`` spec. See the module docstring for the scores and the bar."""
    from circuits.data.spec import load_labelled
    from circuits.graph import build_graph
    from circuits.labels.responses import responses, target_layers

    bar = arguments.number(bar, "bar")
    if not 0.5 <= bar <= 1.0:
        raise UsageError(f"bar must be an AUROC between 0.5 and 1, got {bar}")
    graph = build_graph(model)
    names = target_layers(graph, layers)
    data_set = load_labelled(data, graph.input_shape, masks=True)
    table = factors(data_set.task, data_set.labels, data_set.latents)
    concepts = candidates(table)
    if not concepts:  # too few images for any concept to have MIN_POSITIVES on each side: nothing to score
        return Labels([], names, bar, data_set.spec, data_set.task, 0)
    positives = np.stack([c.positives(table) for c in concepts], axis=1)
    scores, overlaps = responses(graph, data_set.images, names, data_set.latents["mask"], batch_size=batch_size,
                                 device=device, progress=progress)  # fmt: skip
    shuffled = positives[np.random.default_rng(CONTROL_SEED).permutation(len(positives))]
    out = []
    for name in names:
        channels = graph.layer(name).channel_list()
        layer_scores = scores[name]
        rectified = (graph.layer(name).nonlinearity or "").lower() in RECTIFIERS
        grid = auroc(layer_scores, positives)  # [K, C]
        control = np.nanmax(auroc(layer_scores, shuffled), axis=0)
        iou = overlaps[name].iou(positives) if name in overlaps else None
        for c, channel in enumerate(channels):
            k = _best(grid[:, c], concepts, bar)
            entry = NeuronLabel(f"{name}:{channel}", concepts[k].text(), concepts[k].words(), float(grid[k, c]),
                                float(control[c]), None if iou is None else float(iou[k, c]))  # fmt: skip
            positive = positives[:, k]
            if rectified:  # a ReLU neuron that stays at zero on the concept says nothing of it downstream
                entry.fires = float((layer_scores[positive, c] > 0).mean())
            entry.labelled = entry.score >= bar and entry.fires >= MIN_FIRING
            if entry.labelled:
                _as_union(entry, concepts[k], layer_scores[:, c], table, bar)
            out.append(entry)
    return Labels(out, names, bar, data_set.spec, data_set.task, len(concepts))


def _best(column: np.ndarray, concepts: list[Concept], bar: float) -> int:
    """Among the concepts that clear the bar, the one with the fewest OR-alternatives, then the highest
    AUROC: a neuron tuned a little wider than one angle bin is 'angle 45', not 'angle 22 or 45', while a
    conjunction that clears the bar better than its parts ('fish AND facing=left' over 'fish') is kept.
    Where none clears it, the highest AUROC (ties within TIE to the simpler)."""
    clear = [k for k in range(len(concepts)) if column[k] >= bar]
    if clear:
        return min(clear, key=lambda k: (concepts[k].size - len(concepts[k].terms), -column[k]))
    top = np.nanmax(column)
    near = [k for k in range(len(concepts)) if column[k] >= top - TIE]
    return min(near, key=lambda k: (concepts[k].size, len(concepts[k].terms), -column[k]))


def _as_union(entry: NeuronLabel, concept: Concept, score: np.ndarray, table: dict, bar: float) -> None:
    inside = concept.positives(table)
    for factor in CASE_FACTORS:
        if factor not in table or concept.has(factor):
            continue
        cases = {v: inside & mask for v, mask in sorted(table[factor].items())}
        cases = {v: m for v, m in cases.items() if m.any()}
        values = list(cases)
        exclusive = inside.sum() == sum(m.sum() for m in cases.values())
        if len(values) != 2 or not exclusive or min(m.sum() for m in cases.values()) < MIN_POSITIVES:
            continue
        alone = {v: float(auroc_between(score[:, None], m, ~inside)[0]) for v, m in cases.items()}
        between = float(auroc_between(score[:, None], cases[values[0]], cases[values[1]])[0])
        if min(alone.values()) >= bar and abs(between - 0.5) <= INVARIANCE:
            union = concept.plus(factor, values)
            entry.concept, entry.words, entry.cases, entry.between = union.text(), union.words(), alone, between
            return


def shuffled_weight_control(model, data: str, layers=None, bar: float = BAR, seed: int = 0, **kwargs) -> Labels:
    """The same labelling on a copy of ``model`` whose weights are shuffled within each layer
    (:func:`circuits.motifs.control.shuffle_weights`): how many labels a network of the same architecture and
    weight values, with no learned structure, earns on this data. Random filters are selective for simple
    shapes (docs/labels.md measures how much), so read a layer's coverage against this one's."""
    from circuits.motifs.control import shuffle_weights

    return label_neurons(shuffle_weights(model, seed), data=data, layers=layers, bar=bar, **kwargs)
