"""Probe data for a model: a data spec loaded at the model's input shape and normalised the way the model
expects. The one place every command gets its images from.

Which normalisation: the one asked for (``normalize``, the ``--normalize`` option; ``none`` for the pixels as
they are), else the model's own ``preprocess = {"mean": [...], "std": [...]}`` (a ``LoadedModel``'s, from an
attribute on the module), else none. Every spec is normalised alike: generated images (toyworld, noise,
photos) and image files are pixels in [0, 1], and a ``.npy`` / ``.pt`` tensor is read as pixels in [0, 1] too.
"""

from __future__ import annotations

import dataclasses

import torch

from circuits.data.normalize import Normalization, parse_normalize
from circuits.data.spec import Labelled, load_data, load_labelled
from circuits.errors import DataError

TOLERANCE = 1e-3  # how far outside [0, 1] a tensor file may go before it counts as already normalised


def model_normalization(model, normalize=None) -> Normalization | None:
    """The normalisation probe images for ``model`` get, or ``None`` for none: ``normalize`` (text such as
    ``0.5/0.5`` or ``imagenet``, a ``{"mean", "std"}`` dict or a :class:`Normalization`) if given, else the
    model's ``preprocess`` dict (a ``LoadedModel``'s or a module's attribute)."""
    if normalize is not None:
        chosen = parse_normalize(normalize)
    else:
        own = getattr(model, "preprocess", None)
        if not isinstance(own, dict):
            return None
        chosen = parse_normalize(own, what=f"the preprocess of model {getattr(model, 'spec', type(model).__name__)}")
    return None if chosen.identity else chosen


def model_data(spec, model, normalize=None, *, default_n: int = 256) -> torch.Tensor:
    """Probe images for ``model`` (a ``LoadedModel``, or a module with ``input_shape`` / ``preprocess``
    attributes): :func:`~circuits.data.load_data` at the model's input shape, then normalised by
    :func:`model_normalization`.

    A tensor file with values outside [0, 1] that would be normalised raises
    :class:`~circuits.errors.DataError`: it is most likely normalised already (pass ``normalize="none"``).

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Conv2d(3, 4, 3)
    >>> net.input_shape, net.preprocess = (3, 16, 16), {"mean": [0.5], "std": [0.5]}
    >>> images = model_data("photos:4", net)
    >>> float(images.min()) < 0 < float(images.max())
    True
    """
    images = load_data(spec, getattr(model, "input_shape", None), default_n=default_n)
    chosen = model_normalization(model, normalize)
    if chosen is None:
        return images
    low, high = float(images.min()), float(images.max())
    if low < -TOLERANCE or high > 1 + TOLERANCE:
        raise DataError(f"data '{spec}' holds values in [{low:.3g}, {high:.3g}], not pixels in [0, 1], so it looks "
                        f"normalised already; pass --normalize none (normalize='none') to use it as it is, rather "
                        f"than normalise it again by {chosen}")  # fmt: skip
    return chosen.apply(images)


def model_labelled(spec, model, normalize=None, *, default_n: int = 2000, masks: bool = False) -> Labelled:
    """:func:`~circuits.data.spec.load_labelled` for ``model``, its images normalised as :func:`model_data`
    normalises them; latents and masks untouched. ``label_neurons`` and ``find_neurons`` take the result as
    their ``data``."""
    labelled = load_labelled(spec, getattr(model, "input_shape", None), default_n=default_n, masks=masks)
    chosen = model_normalization(model, normalize)
    if chosen is None:
        return labelled
    return dataclasses.replace(labelled, images=chosen.apply(labelled.images))
