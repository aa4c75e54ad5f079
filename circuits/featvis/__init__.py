"""Pictures of neurons: feature visualisation (:func:`visualise`), in one batched optimisation per layer.

    visualise(model, layer, channels=None, objective=Channel(), param=Fourier(), steps=256) -> Pictures

Parameterisations (:mod:`.param`): ``Fourier`` (decorrelated spectrum) and ``Phase`` (MACO). Objectives
(:mod:`.objectives`): ``Channel``, ``Neuron``, ``Negative``. Robustness (:mod:`.robust`):
jitter, scale and rotation drawn before every step. Dataset examples (:func:`dataset_examples`): each
channel's top or bottom ``k`` images with the crop it sees. Circuit agreement
(:func:`circuit_agreement`): does a picture drive its neuron through the inputs natural images use? See
docs/pictures.md.
"""

from circuits.featvis.agreement import Agreement, circuit_agreement
from circuits.featvis.examples import Examples, dataset_examples
from circuits.featvis.objectives import Channel, Negative, Neuron
from circuits.featvis.optimise import Pictures, visualise
from circuits.featvis.param import Fourier, Phase

__all__ = ["Agreement", "Channel", "Examples", "Fourier", "Negative", "Neuron", "Phase", "Pictures", "circuit_agreement", "dataset_examples",
           "visualise"]
