"""The null control: the same weights, shuffled within each layer, so that no motif can survive.

A detector that reports motifs on a network with no structure is reporting its own thresholds. The control
keeps everything a motif does *not* depend on — the architecture, every layer's multiset of weight values
(so their scale and sparsity), biases as a set, BatchNorm statistics — and destroys everything it does:
which neuron reads which input, at which kernel position. Concretely, for every ``Conv*d`` and ``Linear``:

- the weight tensor's entries are permuted uniformly at random across the whole tensor (output channel,
  input channel and kernel position all mixed), so mirror-image kernels, paired inputs and shared
  structure between channels are gone;
- the bias entries are permuted across output channels.

Permuting only output channels would *not* do: it relabels neurons and keeps every motif intact. Shuffling
kernel entries within each kernel keeps which inputs a neuron reads (and so unions). Shuffling the whole
tensor removes both. The shuffle is seeded, so a control is reproducible.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def shuffle_weights(module: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``module`` (eval mode) with every conv/linear weight shuffled within its layer."""
    from circuits.models import LoadedModel

    if isinstance(module, LoadedModel):
        shuffled = shuffle_weights(module.module, seed)
        return LoadedModel(shuffled, spec=f"{module.spec} (shuffled, seed {seed})", input_shape=module.input_shape)
    out = copy.deepcopy(module).eval()
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for _, m in sorted(out.named_modules(), key=lambda item: item[0]):
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                w = m.weight
                w.copy_(w.flatten()[torch.randperm(w.numel(), generator=g)].reshape(w.shape))
                if m.bias is not None:
                    m.bias.copy_(m.bias[torch.randperm(m.bias.numel(), generator=g)])
    return out
