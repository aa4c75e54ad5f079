"""Pictures of circuits: Distill-style layered diagrams rendered with graphviz."""

from circuits.render.diagram import circuit_dot, circuit_svg, render_circuit

__all__ = ["circuit_dot", "circuit_svg", "render_circuit"]
