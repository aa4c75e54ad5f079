"""Pictures of neurons: feature visualisation (:func:`visualise`), in one batched optimisation per layer.

    visualise(model, layer, channels=None, objective=Channel(), param=Fourier(), steps=256) -> Pictures

Parameterisations (:mod:`.param`): ``Fourier`` (decorrelated spectrum) and ``Phase`` (MACO). Objectives
(:mod:`.objectives`): ``Channel``, ``Neuron``, ``Negative``. Robustness (:mod:`.robust`):
jitter, scale and rotation drawn before every step. See docs/pictures.md.
"""

from circuits.featvis.objectives import Channel, Negative, Neuron
from circuits.featvis.optimise import Pictures, visualise
from circuits.featvis.param import Fourier, Phase

__all__ = ["Channel", "Fourier", "Negative", "Neuron", "Phase", "Pictures", "visualise"]
