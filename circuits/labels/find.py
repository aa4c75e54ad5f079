"""Query by concept: which neurons are for these images?

Two ways to say "these images": a concept of the toy world (``"facing=left"``, ``"fish AND facing=left"``),
whose images are picked out of the ``data``; or a folder of the user's own examples, set against ``data`` as
the background. Either way each neuron gets the AUROC of its score (strongest pre-activation in the image)
for the concept's images against the others, and neurons are ranked by it. With examples the background is
everything in ``data``: a neuron ranks high when it responds more to the examples than to typical images, so
the background should be like the examples except for what they share (left-facing objects against objects
facing either way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from circuits import arguments
from circuits.errors import UsageError
from circuits.labels.selectivity import auroc

WEAK = 0.75  # below this the best neuron is reported as a weak match (docs/labels.md)


@dataclass
class Found:
    """Neurons ranked by ``score`` (AUROC), best first, with what the query was."""

    query: str
    neurons: list[dict]  # {"neuron", "score", "layer", "channel"}
    positives: int
    negatives: int
    data: str

    @property
    def weak(self) -> bool:
        return not self.neurons or self.neurons[0]["score"] < WEAK


def find_neurons(model, concept: str | None = None, examples=None, data: str = "toyworld:2000:1", layers=None,
                 top: int | None = 20, *, batch_size: int = 256, device=None) -> Found:  # fmt: skip
    """Rank the neurons of ``layers`` (default: every layer with weights) by selectivity for ``concept`` (a
    concept of the toy-world ``data``) or for ``examples`` (a folder, file or tensor of images) against
    ``data``. Give one of the two. ``top=None`` keeps every neuron."""
    from circuits.data.spec import load_data, load_labelled
    from circuits.graph import build_graph
    from circuits.graph.run import check_data
    from circuits.labels.concepts import factors, parse
    from circuits.labels.responses import responses, target_layers

    if (concept is None) == (examples is None):
        raise UsageError("give a concept (--concept 'facing=left') or example images (--examples DIR), not both")
    if top is not None:
        top = arguments.integer(top, "top", minimum=1)
    graph = build_graph(model)
    names = target_layers(graph, layers)
    if concept is not None:
        labelled = load_labelled(data, graph.input_shape)
        images = labelled.images
        table = factors(labelled.task, labelled.labels, labelled.latents)
        positives = parse(concept, table).positives(table)
        query = concept
    else:
        mine = load_data(examples, graph.input_shape) if not isinstance(examples, torch.Tensor) else check_data(graph, examples)
        background = load_data(data, graph.input_shape) if isinstance(data, str) else check_data(graph, data)
        images = torch.cat([mine.to(background.dtype), background])
        positives = np.r_[np.ones(len(mine), bool), np.zeros(len(background), bool)]
        query = f"examples {examples}" if not isinstance(examples, torch.Tensor) else f"{len(mine)} example images"
    n_pos = int(positives.sum())
    if n_pos == 0 or n_pos == len(positives):
        raise UsageError(f"'{query}' is true of {n_pos} of the {len(positives)} images of {data}: nothing to "
                         "compare; use more data or another concept")  # fmt: skip
    scores, _ = responses(graph, images, names, batch_size=batch_size, device=device)
    ranked = []
    for name in names:
        values = auroc(scores[name], positives[:, None])[0]
        for channel, value in zip(graph.layer(name).channel_list(), values):
            ranked.append({"neuron": f"{name}:{channel}", "score": round(float(value), 4), "layer": name,
                           "channel": channel})  # fmt: skip
    ranked.sort(key=lambda row: -row["score"])  # stable: ties keep layer order
    return Found(query, ranked[:top] if top else ranked, n_pos, len(positives) - n_pos,
                 data if isinstance(data, str) else "tensor")  # fmt: skip
