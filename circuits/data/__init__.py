"""Probe data: the toy-world generator, real photos, the data-spec parser every image command shares, and
the normalisation that maps pixels to what a model expects (docs/data.md).

- :func:`load_data` turns ``toyworld[:TASK][:N][:SEED]``, ``noise:N[:SEED]``, ``photos[:N][:SEED]``,
  ``augment:N[:SEED]:PATH`` or a path into a tensor of pixels in [0, 1].
- :func:`model_data` loads a spec for a model and normalises it (``--normalize``, else the model's own
  ``preprocess``); :func:`model_labelled` does the same for toy-world images with their latents.
- :func:`parse_normalize` reads ``MEAN/STD`` or a preset (``imagenet``, ``none``) into a :class:`Normalization`.
- :mod:`circuits.data.toyworld` renders labelled images with known latent factors
  (``toyworld.generate(n, seed, size=32, rgb=False, task="objects") -> (images, labels, latents)``).
- :mod:`circuits.data.photos` crops and mirrors the photos scikit-image ships, or a folder of your own.
"""

from circuits.data import toyworld
from circuits.data.normalize import NORMALIZE_HELP, Normalization, normalize, parse_normalize
from circuits.data.probe import model_data, model_labelled, model_normalization
from circuits.data.spec import DATA_HELP, load_data

__all__ = ["DATA_HELP", "NORMALIZE_HELP", "Normalization", "load_data", "model_data", "model_labelled",
           "model_normalization", "normalize", "parse_normalize", "toyworld"]  # fmt: skip
