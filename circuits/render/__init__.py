"""Pictures of circuits: Distill-style layered diagrams rendered with graphviz."""

from circuits.render.diagram import circuit_dot, render_circuit

__all__ = ["circuit_dot", "render_circuit"]
