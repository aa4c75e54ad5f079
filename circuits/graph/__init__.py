"""The neuron-graph IR: which neuron layers a model has and which linear paths join them."""

from circuits.graph.ir import NeuronGraph, NeuronLayer, build_graph

__all__ = ["NeuronGraph", "NeuronLayer", "build_graph"]
