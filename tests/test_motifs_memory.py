"""Bounded memory in motif scans: the block-wise similarity and high-pass agree with direct references, a
cache that forgets gives the same motifs as one that keeps everything, and a scan over the memory limit is
refused before it starts. (The peak memory on a 224-pixel MobileNetV2 is measured in
benchmarks/bench_motifs_mobilenetv2.py, not here.)"""

import pytest
import torch
import torch.nn.functional as F

from circuits.errors import UsageError
from circuits.motifs import Context, find
from circuits.motifs import budget as B
from circuits.motifs.families import highpass, weight_similarity
from circuits.motifs.transforms import Identity, Reflect, Rotate, disc


@pytest.mark.parametrize("block", [1, 50, 10**9])
def test_highpass_is_the_kernel_minus_its_binomial_blur(block):
    torch.manual_seed(0)
    kernels = torch.randn(5, 3, 9, 7)
    blur = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0
    flat = kernels.reshape(-1, 1, 9, 7)
    expected = (flat - F.conv2d(flat, blur[None, None], padding=1)).reshape(kernels.shape)
    torch.testing.assert_close(highpass(kernels, block_elements=block), expected, atol=1e-6, rtol=0)


class SoftDisc(Rotate):
    """A rotation compared under a soft-edged mask (not 0 or 1): the masked-copy path."""

    def valid_mask(self, h, w):
        return disc(h, w, soft=2.0)


@pytest.mark.parametrize("transform", [Reflect(), Rotate(90.0), Rotate(30.0), Identity(), SoftDisc(30.0)], ids=repr)
@pytest.mark.parametrize("block", [1, 700, 10**9])
def test_weight_similarity_in_blocks_is_every_pairs_cosine(transform, block):
    torch.manual_seed(1)
    kernels = torch.randn(6, 2, 11, 11)
    mask = transform.valid_mask(11, 11)
    if isinstance(transform, SoftDisc):
        assert bool(((mask > 0) & (mask < 1)).any())  # the case this transform is here for
    expected = torch.empty(6, 6)
    for i in range(6):
        for j in range(6):
            moved, fixed = (transform(kernels[i]) * mask).flatten(), (kernels[j] * mask).flatten()
            expected[i, j] = F.cosine_similarity(moved, fixed, dim=0)
    torch.testing.assert_close(weight_similarity(kernels, transform, block_elements=block), expected,
                               atol=1e-6, rtol=0)  # fmt: skip


@pytest.mark.parametrize("transform", [Reflect(), Rotate(30.0)], ids=repr)
@pytest.mark.parametrize("blocks", [(1, 1), (700, 500), (10**9, 10**9)])
def test_similarity_of_prepared_kernels_in_blocks_is_that_of_the_prepared_copy(transform, blocks):
    torch.manual_seed(2)
    kernels = torch.randn(7, 2, 11, 11)
    expected = weight_similarity(highpass(kernels), transform)
    found = weight_similarity(kernels, transform, block_elements=blocks[0], prepare=highpass, fixed_elements=blocks[1])
    torch.testing.assert_close(found, expected, atol=1e-6, rtol=0)


def test_budget_cache_forgets_the_least_recently_used_and_keeps_the_newest():
    cache = B.BudgetCache(budget=100)
    cache["a"] = torch.zeros(10)  # 40 bytes
    cache["b"] = torch.zeros(10)
    assert cache["a"] is not None  # "a" is now the most recent
    cache["c"] = torch.zeros(10)  # 120 bytes: "b" goes
    assert "a" in cache and "c" in cache and "b" not in cache
    assert cache.total == 80
    cache["huge"] = (torch.zeros(1000), "label")  # over the budget alone: kept, everything else dropped
    assert len(cache) == 1 and cache.total == 4000


def test_making_room_forgets_the_oldest_until_the_new_entry_fits():
    cache = B.BudgetCache(budget=100)
    cache["a"] = torch.zeros(10)
    cache["b"] = torch.zeros(10)
    cache.make_room(30)  # 80 + 30 > 100: "a" goes, 40 + 30 fits
    assert "a" not in cache and "b" in cache and cache.total == 40
    cache.make_room(500)  # more than the budget: everything goes
    assert len(cache) == 0 and cache.total == 0


def _rows(motifs):
    return [m.to_dict() for m in motifs]


@pytest.mark.parametrize("spec", ["planted:union", "planted:curves"])
def test_a_cache_that_forgets_everything_gives_the_same_motifs(spec, monkeypatch):
    kept = Context(spec)
    expected = _rows(find(kept, kind="all"))
    assert expected  # the planted networks hold motifs
    monkeypatch.setenv("CIRCUITS_MOTIF_CACHE_BYTES", "1")
    forgetful = Context(spec)
    assert _rows(find(forgetful, kind="all")) == expected
    assert len(forgetful._kernels) <= 1 and len(forgetful.memo) <= 1  # it did recompute


def test_the_estimate_bounds_the_kernels_a_group_needs():
    ctx = Context("zoo:plain-cnn")
    for name in ctx.analysable():
        kernels, _ = ctx.input_kernels(ctx.parts(name))
        assert kernels.numel() * 4 * B.KERNEL_COPIES <= B.estimate(ctx.graph, ctx.parts(name))


def test_a_scan_over_the_memory_limit_is_refused_before_any_work(monkeypatch):
    from circuits import trace

    def no_tracing(*args, **kwargs):
        raise AssertionError("traced before the memory check")

    monkeypatch.setenv("CIRCUITS_MAX_MOTIF_BYTES", "1000")
    ctx = Context("planted:union")
    monkeypatch.setattr(trace, "weights", no_tracing)
    for kind in ("union", "equivariance", "inhibition"):
        with pytest.raises(UsageError, match=r"motif scan of layer '[^']+' .* needs .* CIRCUITS_MAX_MOTIF_BYTES=\d+"):
            find(ctx, kind=kind)


def test_the_cli_refuses_an_oversized_scan_in_one_line():
    from click.testing import CliRunner

    from circuits.cli import main

    result = CliRunner().invoke(main, ["motifs", "planted:union", "--kind", "union"],
                                env={"CIRCUITS_MAX_MOTIF_BYTES": "1000"})  # fmt: skip
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "CIRCUITS_MAX_MOTIF_BYTES=" in lines[0] and "--layer" in lines[0], result.output


def test_a_groups_kernels_are_each_layers_own_placed_by_their_origin():
    from circuits import trace

    ctx = Context("planted:inception-union")
    concat = next(name for name, info in ctx.graph.layers.items() if info.kind == "concat")
    layers = ctx.parts(concat)
    sets = [trace.weights(ctx.graph, ctx.input_layer, n, expanded=True).kernel_sets[0] for n in layers]
    assert len({ks.kernels.shape[-1] for ks in sets}) > 1  # branches with different receptive fields
    canvas, _ = ctx.input_kernels(layers)
    top, left = min(ks.origin[0] for ks in sets), min(ks.origin[1] for ks in sets)
    first = 0
    for ks in sets:
        c, (h, w) = ks.kernels.shape[0], ks.kernels.shape[-2:]
        y, x = ks.origin[0] - top, ks.origin[1] - left
        block = canvas[first : first + c]
        assert torch.equal(block[:, :, y : y + h, x : x + w], ks.kernels.float())
        outside = block.clone()
        outside[:, :, y : y + h, x : x + w] = 0
        assert not outside.any()  # zero beyond the layer's own field
        first += c
    assert first == canvas.shape[0]
