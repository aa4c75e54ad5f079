"""Training recipes: everything that determines a zoo model's weights, as plain data with a hash.

A recipe plus a seed fixes the weights exactly (on one torch version and CPU): the data come from the toy
world with ``data_seed``, the initialisation and batch order from the model's seed, and training runs on one
thread with deterministic algorithms. ``recipe_hash`` identifies the recipe in model cards and the catalog.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

SEEDS = (0, 1, 2)
EVAL_SEED = 10_000  # held-out data recorded in the model cards; tests draw yet other seeds


@dataclass(frozen=True)
class Recipe:
    """How to train one zoo family (all its seeds)."""

    family: str
    architecture: str
    task: str
    description: str
    arch_kwargs: dict = field(default_factory=dict)
    size: int = 32
    rgb: bool = False
    n_train: int = 12_000
    epochs: int = 4
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    data_seed: int = 1234
    fast_steps: int = 4
    # Wiring sparsity: wiring_penalty x the mean over neurons of L1/L2 of their input-kernel norms (Hoyer's
    # measure) in these layers. Scale-free, so a neuron concentrates on few inputs without shrinking or dying
    # (a plain group lasso killed a third of conv3); then a neuron's top-k circuit is nearly the neuron.
    wiring_penalty: float = 0.0
    wiring_layers: tuple = ()
    # Facing supervision: facing_loss x cross-entropy over (class, facing) cases, each read from one conv3
    # channel (FacingCNN.forward_with_cases), added to the class loss.
    facing_loss: float = 0.0
    facing_contrast: float = 5.0  # weight of the contrast term: a case channel prefers its facing to its mirror's
    facing_margin: float = 2.0  # by this many pre-activation units (softplus hinge)
    facing_or: float = 0.0  # weight of a class cross-entropy read through fc from the two case channels alone

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the recipe's JSON; the description is not part of it, nor are the
        wiring or facing fields while they are off (so adding them left every earlier recipe's hash as it was)."""
        payload = {k: v for k, v in self.as_dict().items() if k != "description"}
        if not self.wiring_penalty:
            payload = {k: v for k, v in payload.items() if not k.startswith("wiring_")}
        if not self.facing_loss:
            payload = {k: v for k, v in payload.items() if not k.startswith("facing_")}
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3 if self.rgb else 1, self.size, self.size)

    def data_recipe(self) -> str:
        colour = "RGB" if self.rgb else "grey"
        return (
            f"toyworld task '{self.task}', {self.n_train} {colour} {self.size}x{self.size} images, "
            f"data seed {self.data_seed}"
        )


PLAIN_CNN = Recipe(
    family="plain-cnn",
    architecture="PlainCNN",
    task="objects",
    description="3 conv layers (16/32/32 channels) on left- and right-facing fish, birds and arrows",
    arch_kwargs={"classes": 3, "width": [16, 32, 32]},
    lr=1e-3,
    epochs=6,
)

RECIPES: dict[str, Recipe] = {
    r.family: r
    for r in [
        PLAIN_CNN,
        replace(  # the plain CNN in everything but the wiring penalty, by construction
            PLAIN_CNN,
            family="plain-cnn-sparse",
            description="the plain CNN's architecture, data and schedule, with conv3 trained for sparse wiring "
            "(few strong inputs per neuron), so that a conv3 neuron's top-8-input circuit reproduces it",
            wiring_penalty=0.7,
            wiring_layers=("conv3",),
        ),
        replace(  # the plain CNN's width, data and schedule, plus a facing head trained alongside the classifier
            PLAIN_CNN,
            family="facing-cnn",
            architecture="FacingCNN",
            description="the plain CNN's architecture, data and schedule, with its first six conv3 channels each "
            "trained to report one class facing one way (fish left, fish right, bird left, ...), and the class "
            "also read through fc from its two case channels alone, so that the class neurons of fc become unions "
            "over a left- and a right-facing detector",
            facing_loss=1.0,
            facing_or=1.0,
        ),
        Recipe(
            family="inception-cnn",
            architecture="InceptionCNN",
            task="objects",
            description="stem + two inception modules (1x1/3x3/5x5/pool branches concatenated) on facing objects",
            arch_kwargs={"classes": 3, "stem": 12, "branch": 6},
        ),
        Recipe(
            family="resnet-cnn",
            architecture="ResNetCNN",
            task="objects",
            description="stem + two residual blocks with BatchNorm on facing objects",
            arch_kwargs={"classes": 3, "width": [12, 12, 24]},
        ),
        Recipe(
            family="mlp",
            architecture="MLP",
            task="curves",
            description="two hidden layers (256/128) on flattened arc images (an MLP reaches only ~86% on the "
            "translated objects task, so it learns the curve task)",
            arch_kwargs={"classes": 4, "hidden": [256, 128]},
            n_train=24_000,
            epochs=10,
            lr=1e-3,
        ),
        Recipe(
            family="curve-cnn",
            architecture="CurveCNN",
            task="curves",
            description="5x5 conv then two 3x3 convs, on arcs of every orientation (label: which way the arc bulges)",
            arch_kwargs={"classes": 4, "width": [8, 16, 16]},
        ),
    ]
}
