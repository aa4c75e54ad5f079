"""Misspelt options, unknown sources and conflicting data are refused, with the valid choices named."""

import inspect

import pytest
import torch

from circuits import trace
from circuits.errors import UnknownNeuronError, UsageError
from circuits.motifs import (
    OPTIONS,
    Context,
    equivariance,
    find,
    inhibitions,
    network_motifs,
    polysemantic,
    unions,
)
from circuits.motifs.context import as_context


def probe(n=4, seed=0, shape=(1, 15, 15)):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def union_context():
    return Context("planted:union")


def test_find_refuses_a_misspelt_option_with_the_valid_ones(union_context):
    with pytest.raises(UsageError, match=r"unknown option 'treshold'.*did you mean 'threshold'.*options: balance, margin"):
        find(union_context, kind="union", treshold=0.9)


def test_find_refuses_an_option_the_asked_detector_does_not_take(union_context):
    with pytest.raises(UsageError, match="unknown option 'angles' for the union detector"):
        find(union_context, kind="union", angles=(45,))
    find(union_context, kind="union", threshold=0.9)  # a real option still goes through


def test_find_options_table_names_real_detector_arguments():
    detectors = {"equivariance": equivariance, "union": unions, "inhibition": inhibitions,
                 "polysemantic": polysemantic, "network": network_motifs}  # fmt: skip
    for kind, names in OPTIONS.items():
        parameters = inspect.signature(detectors[kind]).parameters
        assert set(names) <= set(parameters), kind


def test_weights_kernels_of_an_unknown_source_is_an_unknown_neuron_error():
    weights = trace.weights("planted:union", target="union")
    (source,) = weights.sources
    assert weights.kernels(source).shape[0] == weights.target_channels
    with pytest.raises(UnknownNeuronError, match=rf"not a source .*did you mean '{source}'.*sources: {source}"):
        weights.kernels(source + "x")


def test_a_context_refuses_data_that_conflicts_with_its_own():
    shape = Context("planted:union").graph.input_shape
    held, other = probe(shape=shape), probe(seed=1, shape=shape)
    ctx = Context("planted:union", held)
    assert as_context(ctx, held.clone()) is ctx  # the same images: fine
    assert as_context(ctx, None) is ctx
    with pytest.raises(UsageError, match="already holds other probe data"):
        as_context(ctx, other)
    with pytest.raises(UsageError, match="already holds other probe data"):
        unions(ctx, data=other[:3])
    with pytest.raises(UsageError, match="already holds other probe data"):
        find(ctx, kind="union", data=other)


def test_a_context_without_data_takes_the_data_given():
    ctx = Context("planted:union")
    images = probe(shape=ctx.graph.input_shape)
    assert as_context(ctx, images).data is not None and torch.equal(ctx.data, images)
