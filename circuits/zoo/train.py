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
        norms = layers[name].weight.pow(2).flatten(2).sum(2).add(1e-12).sqrt()  # [out, in]
        cost = cost + (norms.sum(1) / norms.pow(2).sum(1).sqrt()).mean()
    return recipe.wiring_penalty * cost


def training_data(recipe: Recipe, fast: bool = False):
    from circuits.data import toyworld

    n = recipe.batch * recipe.fast_steps if fast else recipe.n_train
    images, labels, _ = toyworld.generate(n, seed=recipe.data_seed, size=recipe.size, rgb=recipe.rgb, task=recipe.task)
    return images, labels


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
        images, labels = training_data(recipe, fast)
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
                loss = F.cross_entropy(module(images[index]), labels[index]) + wiring_cost(module, recipe)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
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
