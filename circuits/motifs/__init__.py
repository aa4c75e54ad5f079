"""Motifs: recurring structure in a network's neuron graph, found from weights and confirmed on data.

    find(model, kind="all", layer=None, data=None) -> list[Motif]     every detector below, one call

One function per kind, each usable alone (all take ``model, layer=None, data=None`` and documented
thresholds as keyword arguments):

- :func:`equivariance` — families of neurons that are reflected or rotated copies of each other
  (weights: expanded kernels transformed and compared; activations: transformed images vs transformed maps);
- :func:`unions` — invariant neurons built from an equivariant pair or family (``U = A OR T·A``);
- :func:`inhibitions` — opponent neurons, excited by a feature and inhibited by its transformed copy;
- :func:`polysemantic` — neurons whose top probe images split into clusters of different content;
- :func:`network_motifs` — feed-forward loops, fan-in and mutual inhibition against a randomised baseline;
- :func:`universality` — neurons matched across models, and motif instances grouped into families.

Transforms are values (:mod:`circuits.motifs.transforms`); results are :class:`Motif` records whose
``to_dict()`` is the ``circuits motifs --json`` schema (:func:`to_json`). The control for all of it is
:func:`shuffle_weights`. See docs/motifs.md.
"""

from __future__ import annotations

from circuits import arguments
from circuits.errors import UsageError, close_matches_hint
from circuits.limits import check_seed
from circuits.motifs.context import Context, as_context, probe_data
from circuits.motifs.control import shuffle_weights
from circuits.motifs.families import equivariance
from circuits.motifs.inhibition import inhibitions
from circuits.motifs.matching import match_layer, universality
from circuits.motifs.network import network_motifs, neuron_graph
from circuits.motifs.polysemy import polysemantic
from circuits.motifs.report import KINDS, Motif, sort_motifs, to_json
from circuits.motifs.transforms import Reflect, Rotate, Scale, Transform, compose
from circuits.motifs.union import unions

CHOICES = (*KINDS, "all")
OPTIONS = {  # the keyword options each detector takes through find()
    "equivariance": ("transforms", "angles", "threshold", "margin", "include_invariant"),
    "union": ("top_k", "balance", "threshold", "margin"),
    "inhibition": ("top_k", "balance", "threshold", "margin"),
    "polysemantic": ("top", "min_silhouette", "min_distance", "alpha"),
    "network": ("n_random", "seed", "z_min", "min_count", "layered"),
}


def find(model, kind: str = "all", layer: str | None = None, data=None, *, input_shape=None,
         network_top_k: int = 4, device=None, normalize=None, **options) -> list[Motif]:  # fmt: skip
    """Every motif of ``kind`` (``equivariance``, ``union``, ``inhibition``, ``polysemantic``, ``network``
    or ``all``) in ``layer`` (default: the whole model), in a stable order.

    ``model`` is a spec (``planted:union``), module, LoadedModel, NeuronGraph or :class:`Context`; ``data``
    probe images as a tensor or a spec (``toyworld:256``). Without data the detectors that can work from
    weights alone do (equivariance, union, inhibition, network); ``polysemantic`` needs toy-world data.
    ``options`` go to the detectors that accept them (e.g. ``threshold=0.9``, :data:`OPTIONS`); one that
    no detector of ``kind`` takes is refused. ``device`` is where activations on ``data`` are computed.

    Examples
    --------
    >>> from circuits.motifs import find
    >>> [(m.kind, m.target, m.members) for m in find("planted:union", kind="union")]
    [('union', 'union:0', ('wedges:0', 'wedges:1')), ('union', 'union:2', ('wedges:0', 'wedges:1'))]
    """
    if arguments.text(kind, "kind") not in CHOICES:
        raise UsageError(f"unknown motif kind '{kind}' (kinds: {', '.join(CHOICES)}){close_matches_hint(kind, CHOICES)}")
    kinds = KINDS if kind == "all" else (kind,)
    _check_options(options, kinds)
    network_top_k = arguments.integer(network_top_k, "network_top_k", minimum=1)
    ctx = as_context(model, data, input_shape=input_shape, device=device, normalize=normalize)
    if layer is not None:
        ctx.graph.layer(layer)  # unknown layers fail here, with suggestions
    found: list[Motif] = []
    for k in kinds:
        if k == "equivariance":
            found += equivariance(ctx, layer, **_only(options, k))
        elif k == "union":
            found += unions(ctx, layer, **_only(options, k))
        elif k == "inhibition":
            found += inhibitions(ctx, layer, **_only(options, k))
        elif k == "polysemantic":
            found += polysemantic(ctx, layer, **_only(options, k))
        elif k == "network":
            graph = neuron_graph(ctx, layer, top_k=network_top_k)
            found += network_motifs(graph, **_only(options, k))
    return sort_motifs(found)

# What each numeric or flag option must be (transforms and angles are checked by the detector that reads them).
COUNTS = {"top_k": 1, "top": 1, "n_random": 1, "min_count": 0}  # integer options and their minimum
NUMBERS = ("threshold", "margin", "balance", "min_silhouette", "min_distance", "alpha", "z_min")
FLAGS = ("include_invariant", "layered")


def _check_options(options: dict, kinds) -> None:
    """Unknown names refused with suggestions; numbers, counts, seeds and flags checked as what they are."""
    valid = sorted({name for k in kinds for name in OPTIONS[k]})
    for name, value in list(options.items()):
        if name not in valid:
            which = "any detector" if len(kinds) > 1 else f"the {kinds[0]} detector"
            raise UsageError(f"unknown option '{name}' for {which}{close_matches_hint(name, valid)} "
                             f"(options: {', '.join(valid)})")  # fmt: skip
        if name in COUNTS:
            options[name] = arguments.integer(value, name, minimum=COUNTS[name])
        elif name in NUMBERS:
            options[name] = arguments.number(value, name)
        elif name == "seed":
            options[name] = check_seed(arguments.integer(value, name))
        elif name in FLAGS:
            arguments.flag(value, name)


def _only(options: dict, kind: str) -> dict:
    return {k: v for k, v in options.items() if k in OPTIONS[kind]}


__all__ = [
    "CHOICES", "KINDS", "OPTIONS", "Context", "Motif", "Reflect", "Rotate", "Scale", "Transform", "compose",
    "equivariance", "find", "inhibitions", "match_layer", "network_motifs", "neuron_graph", "polysemantic",
    "probe_data", "shuffle_weights", "sort_motifs", "to_json", "unions", "universality",
]
