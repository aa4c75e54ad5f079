"""Circuit agreement against its controls: the planted fooling circuit and a random-weight twin.

    python benchmarks/agreement_control.py            # about two minutes on the 2-core box; prints a table

What it measures, per layer of the zoo plain CNN and of the same architecture with seeded random weights
(PyTorch's default initialisation, seed 0): the median circuit agreement of the layer's pictures (one per
channel, ``Neuron()`` at the centre, 128 steps) with their 9 natural top examples among 1024 toy-world
images; the median relative activation; and how much the picture looks like its examples (the centred
cosine between the picture's receptive-field crop and the mean of the examples' crops). The fooling
circuit's two readouts are the reference for what low agreement looks like. The table is the one in
docs/pictures.md ("What agreement does and does not say").
"""

from __future__ import annotations

import argparse
import statistics

import torch


def centred_cosine(a, b):
    a, b = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return torch.nn.functional.cosine_similarity(a, b)


def layer_row(model, layer, data, steps):
    from circuits.featvis import Neuron, dataset_examples, visualise
    from circuits.featvis.agreement import circuit_agreement
    from circuits.featvis.examples import field_crops
    from circuits.graph import build_graph

    graph = build_graph(model)
    pictures = visualise(graph, layer, objective=Neuron(), steps=steps)
    examples = dataset_examples(graph, layer, data, k=9)
    found = circuit_agreement(graph, pictures, data, examples=examples)
    n = len(pictures.neurons)
    crops = field_crops(graph, layer, pictures.images, pictures.positions)
    looks = centred_cosine(crops, examples.crops.mean(1))
    relative = [r for r in found.relative_activation.tolist() if r == r]
    agreement = [a for a in found.agreement.tolist() if a == a]
    return {
        "agreement": statistics.median(agreement), "agreement_min": min(agreement),
        "relative": statistics.median(relative) if relative else float("nan"),
        "looks": float(looks.median()), "n": n,
    }  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--images", type=int, default=1024)
    args = parser.parse_args(argv)
    from circuits import zoo
    from circuits.data.spec import load_data
    from circuits.featvis import Neuron, visualise
    from circuits.featvis.agreement import circuit_agreement
    from circuits.zoo.architectures import PlainCNN

    torch.set_num_threads(1)
    trained = zoo.load("plain-cnn").module
    torch.manual_seed(0)
    random = PlainCNN(*trained.input_shape[:2], classes=trained.fc.out_features,
                      width=(trained.conv1.out_channels, trained.conv2.out_channels, trained.conv3.out_channels)).eval()  # fmt: skip
    data = load_data(f"toyworld:{args.images}", trained.input_shape)
    print("| model | layer | neurons | agreement: median (min) | relative activation: median | picture looks like examples: median |")
    print("|---|---|---|---|---|---|")
    for name, model in [("zoo plain-cnn", trained), ("random-weight twin", random)]:
        for layer in ("conv1", "conv2", "conv3"):
            r = layer_row(model, layer, data, args.steps)
            print(f"| {name} | {layer} | {r['n']} | {r['agreement']:.2f} ({r['agreement_min']:.2f}) | {r['relative']:.2f} "
                  f"| {r['looks']:.2f} |", flush=True)  # fmt: skip
    fooling = "planted:fooling"
    found = circuit_agreement(fooling, visualise(fooling, "readout", objective=Neuron(), steps=args.steps),
                              load_data(f"toyworld:{args.images}", (1, 24, 24)))  # fmt: skip
    for row, name in zip(found.to_dicts(), ("honest", "fooled")):
        print(f"| planted fooling | readout ({name}) | 1 | {row['agreement']:.2f} | {row['relative_activation']:.2f} | — |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
