"""Train a zoo model from its recipe, deterministically, on one CPU thread.

``train("plain-cnn", seed=0)`` reproduces the shipped ``plain-cnn-s0`` weights bit for bit on the same torch
version and CPU; ``fast=True`` runs only a few steps on a small batch of data, which is what CI uses to check
that two runs agree.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from circuits.zoo.recipes import EVAL_SEED, RECIPES, Recipe


@dataclass
class TrainResult:
    module: nn.Module
    recipe: Recipe
    seed: int
    weights_hash: str
    accuracy: float
    steps: int
    seconds: float
    fast: bool


def build(recipe: Recipe) -> nn.Module:
    """A freshly initialised module for ``recipe`` (initialisation uses torch's global RNG)."""
    from circuits.zoo.architectures import ARCHITECTURES

    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in recipe.arch_kwargs.items()}
    channels, size, _ = recipe.input_shape
    return ARCHITECTURES[recipe.architecture](in_channels=channels, size=size, **kwargs)


@contextlib.contextmanager
def deterministic(threads: int = 1):
    """One thread and deterministic kernels for the duration; the caller's settings are restored."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


def wiring_cost(module: nn.Module, recipe: Recipe) -> torch.Tensor | float:
    """The recipe's wiring penalty: per neuron, L1 / L2 of its input kernels' L2 norms (1 when one input is
    left, sqrt(fan-in) when all are equal), averaged over each wiring layer's neurons."""
    if not recipe.wiring_penalty:
        return 0.0
    layers = dict(module.named_modules())
    cost = 0.0
    for name in recipe.wiring_layers:
        squares = layers[name].weight.pow(2)
        norms = (squares.flatten(2).sum(2) if squares.dim() > 2 else squares).add(1e-12).sqrt()  # [out, in]
        cost = cost + (norms.sum(1) / norms.pow(2).sum(1).sqrt()).mean()
    return recipe.wiring_penalty * cost


def training_data(recipe: Recipe, fast: bool = False):
    """``(images, labels, facing)``: facing is the latent as a class index (0 left, 1 right; 0 when unfaced)."""
    from circuits.data import toyworld

    n = recipe.batch * recipe.fast_steps if fast else recipe.n_train
    images, labels, latents = toyworld.generate(n, seed=recipe.data_seed, size=recipe.size, rgb=recipe.rgb,
                                                task=recipe.task)  # fmt: skip
    return images, labels, torch.from_numpy(latents["facing"] > 0).long()


def loss(module: nn.Module, recipe: Recipe, images, labels, facing) -> torch.Tensor:
    """Cross-entropy on the class and the recipe's wiring penalty; with ``facing_loss`` on (FacingCNN), also the
    case cross-entropy, the mirror contrast and the class read through fc from its two cases (below)."""
    if not recipe.facing_loss:
        return F.cross_entropy(module(images), labels) + wiring_cost(module, recipe)
    # FacingCNN: case 2k + f is class k facing left (0) or right (1). Each image is seen with its mirror image,
    # whose facing is the other: the class and case cross-entropies read both, and a contrast term asks each
    # image's own case channel to respond more to it than to its mirror (and the other facing's channel the
    # reverse): under the cross-entropy alone "left" could be read as "not right", and the left channels were
    # no facing detectors (within-class AUROC 0.6-0.7 on seeds 0 and 1); with the contrast at weight 1 and
    # margin 1 some still were not (0.77), at weight 5 and margin 2 the fish and bird cases reach 0.95-0.99.
    both = torch.cat([images, images.flip(-1)])
    class_logits, case_logits, peaks = module.forward_with_cases(both, peaks=True)
    classes = torch.cat([labels, labels])
    cases = torch.cat([2 * labels + facing, 2 * labels + 1 - facing])
    own = peaks.gather(1, cases[:, None])[:, 0]
    on_mirror = peaks.roll(len(images), 0).gather(1, cases[:, None])[:, 0]  # that channel on the mirror image
    contrast = F.softplus(recipe.facing_margin - (own - on_mirror)).mean()
    extra = 0.0
    if recipe.facing_or:  # the class read through fc's weights on its own two cases only: fc:k must OR them
        k = torch.arange(peaks.shape[1] // 2)
        weights = module.fc.weight[k[:, None], 2 * k[:, None] + torch.arange(2)]  # [classes, 2]
        pairs = F.relu(peaks).view(len(peaks), -1, 2)  # [N, classes, 2]
        extra = recipe.facing_or * F.cross_entropy((pairs * weights).sum(2) + module.fc.bias, classes)
    return (F.cross_entropy(class_logits, classes) + extra
            + recipe.facing_loss * (F.cross_entropy(case_logits, cases) + recipe.facing_contrast * contrast)
            + wiring_cost(module, recipe))  # fmt: skip


def evaluate(module: nn.Module, recipe: Recipe, n: int = 2000, seed: int = EVAL_SEED) -> float:
    """Accuracy on ``n`` fresh toy-world images of the recipe's task (a seed the training never saw)."""
    from circuits.data import toyworld

    images, labels, _ = toyworld.generate(n, seed=seed, size=recipe.size, rgb=recipe.rgb, task=recipe.task)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            predictions = torch.cat([module(chunk).argmax(1) for chunk in images.split(500)])
    finally:
        module.train(was_training)
    return float((predictions == labels).float().mean())


def train(family: str, seed: int, fast: bool = False, progress=None, eval_n: int = 2000) -> TrainResult:
    """Train ``family`` (a key of ``RECIPES``) with ``seed``; ``progress(step, total)`` is called per step."""
    from circuits.models import weights_hash

    recipe = RECIPES[family]
    start = time.perf_counter()
    with deterministic():
        images, labels, facing = training_data(recipe, fast)
        torch.manual_seed(seed)
        module = build(recipe)
        order = torch.Generator().manual_seed(seed)
        batches = math.ceil(len(images) / recipe.batch)
        total = recipe.fast_steps if fast else batches * recipe.epochs
        optimiser = torch.optim.Adam(module.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        module.train()
        step = 0
        while step < total:
            permutation = torch.randperm(len(images), generator=order)
            for index in permutation.split(recipe.batch):
                if step >= total:
                    break
                for group in optimiser.param_groups:  # cosine decay to zero
                    group["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / total))
                value = loss(module, recipe, images[index], labels[index], facing[index])
                optimiser.zero_grad(set_to_none=True)
                value.backward()
                optimiser.step()
                step += 1
                if progress is not None:
                    progress(step, total)
        module.eval()
        accuracy = evaluate(module, recipe, n=256 if fast else eval_n)
    return TrainResult(
        module=module,
        recipe=recipe,
        seed=seed,
        weights_hash=weights_hash(module),
        accuracy=accuracy,
        steps=step,
        seconds=time.perf_counter() - start,
        fast=fast,
    )
