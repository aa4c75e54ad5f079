"""Comparing two models of one architecture, neuron by neuron and circuit by circuit.

    diff(model_a, model_b, data="toyworld:256") -> dict        what changed from A to B, ranked

:func:`match` lines up the neurons of two models layer by layer (the identity where it holds, otherwise an
optimal assignment on activations), so a permuted or fine-tuned copy compares neuron to neuron;
:func:`diff` then ranks the neurons whose function or input weights changed more than the rest of their
layer did, the edges whose strength moved most against the layer's spread, and the motifs gained or lost,
beside the naive baseline (relative change of each neuron's input weights, no matching, no
normalisation). See docs/compare.md.
"""

from circuits.compare.diff import diff, naive_ranking
from circuits.compare.match import Matching, match

__all__ = ["Matching", "diff", "match", "naive_ranking"]
