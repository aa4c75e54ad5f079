"""How long `circuits diff` takes on two MobileNet-size models at 224 pixels, against its own floor.

Model A is the benchmark MobileNetV2 (benchmarks/mobilenetv2.py, random weights, 3.5 M parameters); B is
a copy with 1% noise on every weight and one expand-conv neuron of block 6 grafted. ``--what diff`` runs
the whole diff (matching, neuron and edge scores; motifs off, as they are a separate scan); ``--what
forward`` runs only what any diff must: both models' activations of every compared layer on the same
images. Paired by farm-bench, the ratio says what the diff adds to that floor:

    farm-bench -n 3 --timeout 600 --vs 'python3 benchmarks/bench_diff.py --what forward' -- \\
        python3 benchmarks/bench_diff.py --what diff
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from mobilenetv2 import MobileNetV2  # noqa: E402


def models():
    torch.manual_seed(0)
    a = MobileNetV2().eval()
    a.input_shape = (3, 224, 224)
    b = copy.deepcopy(a)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01 * float(p.std()))
        b.features[6].conv[0][0].weight[5] = b.features[6].conv[0][0].weight[12]
    return a, b


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["diff", "forward"], default="diff")
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()
    from circuits.compare import diff
    from circuits.compare.diff import _layers
    from circuits.graph import build_graph

    a, b = models()
    images = torch.rand(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    if args.what == "forward":
        graph_a, graph_b = build_graph(a), build_graph(b)
        layers = _layers(graph_a, graph_b, None)
        graph_a.run(images, layers), graph_b.run(images, layers)
        return
    result = diff(a, b, images, motifs=False)
    print(result["neurons"][0]["neuron"], f"{result['neurons'][0]['score']:.1f}", len(result["layers"]), "layers")


if __name__ == "__main__":
    main()
