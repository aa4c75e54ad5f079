"""Scores that say how well a neuron picks out a concept, each with a meaning of its own.

- **AUROC** of the neuron's score on an image (its strongest pre-activation anywhere in the image) for the
  concept's images against the rest: the chance that a random positive outranks a random negative. 0.5 is
  chance, 1 a perfect detector, below 0.5 the concept suppresses the neuron. Computed for every neuron and
  every concept at once from average ranks (ties count a half), via the Mann-Whitney identity.
- **IoU** (Network Dissection, Bau et al. 2017): threshold each neuron's map at its top ``quantile`` over all
  positions of all images, upsample it to the image, and compare the pixels it covers with the concept's
  mask, summed over the data. Only where the data has masks and the layer has maps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..N of each column, tied values sharing their mean rank."""
    scores = np.asarray(scores, float)
    ranks = np.empty_like(scores)
    n = len(scores)
    for c in range(scores.shape[1]):
        order = np.argsort(scores[:, c], kind="stable")
        ordered = scores[order, c]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], n]
        mean = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
        ranks[order, c] = np.repeat(mean, ends - starts)
    return ranks


def auroc(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """``[K, C]``: AUROC of each of C score columns for each of K boolean positive columns (N x K) against
    the other images. A column with no positives or no negatives gives NaN."""
    positives = np.asarray(positives, bool)
    ranks = average_ranks(scores)
    n_pos = positives.sum(axis=0).astype(float)[:, None]
    n_neg = len(positives) - n_pos
    rank_sum = positives.T.astype(float) @ ranks
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc_between(scores: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """AUROC of each score column for the ``first`` images against the ``second`` (the rest left out)."""
    keep = first | second
    return auroc(scores[keep], first[keep][:, None])[0]


def map_thresholds(maps: np.ndarray, quantile: float) -> np.ndarray:
    """Per channel of ``maps`` (N x C x H x W), the value above which its top ``quantile`` of positions lie."""
    flat = np.moveaxis(np.asarray(maps), 1, 0).reshape(maps.shape[1], -1)
    return np.quantile(flat, 1.0 - quantile, axis=1)


class OverlapCounts:
    """Per image and channel: pixels the thresholded, upsampled map covers, and how many of them lie in the
    image's mask; then every concept's IoU with every channel by one matrix product."""

    def __init__(self, thresholds: np.ndarray):
        self.thresholds = torch.as_tensor(thresholds, dtype=torch.float32)
        self.inside, self.covered, self.mask_area = [], [], []

    def add(self, maps: torch.Tensor, masks: np.ndarray) -> None:
        size = masks.shape[-2:]
        up = F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)
        on = up > self.thresholds[None, :, None, None]
        mask = torch.from_numpy(np.asarray(masks, bool))[:, None]
        self.inside.append((on & mask).flatten(2).sum(2).numpy())
        self.covered.append(on.flatten(2).sum(2).numpy())
        self.mask_area.append(mask.flatten(1).sum(1).numpy())

    def iou(self, positives: np.ndarray) -> np.ndarray:
        """``[K, C]``: the concept's mask is the image's mask on its positive images and empty elsewhere."""
        inside = np.concatenate(self.inside).astype(float)
        covered = np.concatenate(self.covered).astype(float)
        area = np.concatenate(self.mask_area).astype(float)
        pos = np.asarray(positives, float)
        intersection = pos.T @ inside
        union = covered.sum(0)[None, :] + (pos.T @ area)[:, None] - intersection
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, intersection / union, 0.0)
