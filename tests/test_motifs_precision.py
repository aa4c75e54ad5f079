"""Precision of reported motifs against an independent activation check on held-out images
(tests/activation_check.py): at least 0.9 on every net here, with and without probe data."""

import pytest

import circuits
from circuits.data import load_data
from circuits.motifs import Context, find
from tests import nets
from tests.activation_check import precision

STROKES, OBJECTS = "toyworld:strokes:256", "toyworld:256"
NETS = [
    ("planted:union", STROKES), ("planted:complex-union", STROKES), ("planted:inception-union", STROKES),
    ("planted:curves", STROKES), ("zoo:plain-cnn-s0", OBJECTS), ("zoo:facing-cnn-s0", OBJECTS),
    ("zoo:curve-cnn-s0", "toyworld:curves:256"), ("zoo:resnet-cnn-s0", OBJECTS),
    *((f"tests.nets:{net.__name__}", "toyworld:128") for net in nets.ALL_NETS if net is not nets.MLP),
    ("tests.nets:MobileNetV2Twin", "toyworld:128"),
]  # fmt: skip


@pytest.mark.parametrize("model,data", NETS, ids=[n for n, _ in NETS])
def test_reported_motifs_hold_on_held_out_images(model, data):
    loaded = circuits.load(model)
    held_out = load_data(f"{data}:99", Context(loaded).graph.input_shape)
    for probe in (None, data):
        found = [m for kind in ("equivariance", "union", "inhibition") for m in find(Context(loaded, probe), kind=kind)]
        held, reported = precision(loaded, found, held_out)
        assert reported == 0 or held / reported >= 0.9, (probe, held, reported)
