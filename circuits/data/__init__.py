"""Probe data: the toy-world generator and the data-spec parser every image command shares.

- :func:`load_data` turns ``toyworld[:TASK][:N][:SEED]``, ``noise:N[:SEED]`` or a path into a tensor.
- :mod:`circuits.data.toyworld` renders labelled images with known latent factors
  (``toyworld.generate(n, seed, size=32, rgb=False, task="objects") -> (images, labels, latents)``).
"""

from circuits.data import toyworld
from circuits.data.spec import DATA_HELP, load_data

__all__ = ["DATA_HELP", "load_data", "toyworld"]
