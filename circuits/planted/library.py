"""Ready specs: small networks whose circuits are known exactly, for tests and tutorials.

Each builder returns a fresh :class:`PlantedSpec`; :data:`LIBRARY` maps the kebab-case names that
``circuits planted list`` shows (and ``planted:NAME`` loads) to them. Inputs are one gray channel of 24x24
pixels. Every spec's ``motifs`` lists what it plants, with neurons as ``LAYER:CHANNEL``, so tests elsewhere
can use it as the oracle (see docs/planted.md).

Angles follow :mod:`circuits.planted.kernels`: degrees counter-clockwise from +x with y up the image, so
``rot90`` of the image adds 90° and a horizontal flip maps θ to 180° - θ.
"""

from __future__ import annotations

from circuits.planted.spec import BatchNorm, Input, InputSpec, Layer, Neuron, PlantedSpec

SIZE = 24
LINE_ANGLES = [22.5 * i for i in range(8)]  # 0, 22.5, ..., 157.5: orientations, so 8 cover the half-turn
CURVE_ANGLES = [45 * i for i in range(8)]  # 0, 45, ..., 315: curves have a direction, so the full turn
LINE_KERNEL, WEDGE_KERNEL, CURVE_KERNEL = 5, 5, 7
LINE_BIAS = -1.5
WEDGE_BIAS = -8.0
AND_BIAS = -5.0
CHECKER_BIAS = -6.0  # natural images reach about -3.6 (docs/pictures.md)
FOOLING_GAIN = 30.0


def line_name(angle: float) -> str:
    """``line_0``, ``line_22``, ``line_45``, ``line_67``, ``line_90``, ``line_112``, ``line_135``, ``line_157``."""
    return f"line_{int(angle)}"


def _summary(builder) -> str:
    """A builder's docstring's first line, as plain text: the spec's description."""
    return builder.__doc__.strip().splitlines()[0].replace("``", "")


def _gray() -> InputSpec:
    return InputSpec(channels=["gray"], height=SIZE, width=SIZE)


def _lines_layer() -> Layer:
    return Layer(
        name="lines",
        kernel_size=LINE_KERNEL,
        neurons=[
            Neuron(line_name(a), [Input("gray", kernel={"generator": "line", "angle": a})], bias=LINE_BIAS)
            for a in LINE_ANGLES
        ],
    )


def _arm(direction: tuple[int, int], size: int = WEDGE_KERNEL) -> list[list[float]]:
    """A kernel that reads a line map along one arm going out from the centre (weight 1 at steps 1..c)."""
    kernel = [[0.0] * size for _ in range(size)]
    c = size // 2
    for t in range(1, c + 1):
        kernel[c + t * direction[0]][c + t * direction[1]] = 1.0
    return kernel


UP_RIGHT, DOWN_RIGHT, UP_LEFT, DOWN_LEFT = (-1, 1), (1, 1), (-1, -1), (1, -1)  # (dy, dx) in array rows/cols


def _wedge_left() -> Neuron:
    """'<': the vertex here, arms going up-right (a 45° line) and down-right (a 135° line)."""
    return Neuron(
        "wedge_left",
        [Input("line_45", kernel=_arm(UP_RIGHT)), Input("line_135", kernel=_arm(DOWN_RIGHT))],
        bias=WEDGE_BIAS,
    )


def _wedge_right() -> Neuron:
    """'>': the mirror image of '<' — arms up-left (135°) and down-left (45°)."""
    return Neuron(
        "wedge_right",
        [Input("line_135", kernel=_arm(UP_LEFT)), Input("line_45", kernel=_arm(DOWN_LEFT))],
        bias=WEDGE_BIAS,
    )


def _decoys(names: list[str], sources: list[str], size: int, seed: int) -> list[Neuron]:
    """Neurons reading every source with seeded random kernels: plausible-looking, but no planted motif."""
    return [
        Neuron(
            name,
            [
                Input(s, kernel={"generator": "random", "seed": seed + 100 * k + j, "scale": 0.3})
                for j, s in enumerate(sources)
            ],
            bias=-0.1,
        )
        for k, name in enumerate(names)
    ]


def _readout_neurons(sources: list[str]) -> list[Neuron]:
    return [
        Neuron("union", [Input("wedge_left", 1.0), Input("wedge_right", 1.0)]),
        Neuron("opponent", [Input("wedge_left", 1.0), Input("wedge_right", -1.0)]),
        Neuron("cross", [Input("wedge_left", 1.0), Input("wedge_right", 1.0)], bias=AND_BIAS),
        *_decoys(["decoy_2"], sources, size=1, seed=7),
    ]


def _line_motifs(spec: PlantedSpec) -> list[dict]:
    def ident(angle):
        return spec.neuron_id("lines", line_name(angle % 180))

    return [
        {
            "kind": "rotation",
            "description": "rot90 of the image maps line θ to line θ+90 (mod 180)",
            "rot90": {ident(a): ident(a + 90) for a in LINE_ANGLES},
        },
        {
            "kind": "reflection",
            "description": "a horizontal flip of the image maps line θ to line 180-θ",
            "flip": {ident(a): ident(180 - a) for a in LINE_ANGLES},
        },
    ]


def _wedge_motifs(spec: PlantedSpec, left_layer: str, right_layer: str) -> list[dict]:
    left, right = spec.neuron_id(left_layer, "wedge_left"), spec.neuron_id(right_layer, "wedge_right")
    return [
        {
            "kind": "reflection-pair",
            "description": "wedge_left ('<') and wedge_right ('>') are mirror images: a flip swaps them",
            "flip": {left: right, right: left},
            "inputs": {
                left: [spec.neuron_id("lines", "line_45"), spec.neuron_id("lines", "line_135")],
                right: [spec.neuron_id("lines", "line_135"), spec.neuron_id("lines", "line_45")],
            },
        }
    ]


def _readout_motifs(spec: PlantedSpec, left: str, right: str, decoys: list[str]) -> list[dict]:
    def ident(name):
        return spec.neuron_id("union", name)

    return [
        {"kind": "union", "neuron": ident("union"), "of": [left, right],
         "description": "relu(L + R): responds to a wedge facing either way (union over reflection)"},
        {"kind": "opponent", "neuron": ident("opponent"), "excite": left, "inhibit": right,
         "description": "relu(L - R): left-facing wedges excite, right-facing ones inhibit"},
        {"kind": "and", "neuron": ident("cross"), "of": [left, right], "bias": AND_BIAS,
         "description": "relu(L + R - 5): fires only where both wedges meet (an X), not for either alone"},
        {"kind": "decoy", "neurons": [*decoys, ident("decoy_2")],
         "description": "seeded random weights: no planted motif; extraction should not rank them above L, R"},
    ]


def lines() -> PlantedSpec:
    """Eight oriented line detectors (0°, 22.5°, ..., 157.5°): a rotation-equivariant family.

    Layer ``lines`` (5x5, relu): ``line_0 ... line_157`` read the gray image through ``line`` kernels.
    Rotating the image by 90° permutes them exactly (θ -> θ + 90); flipping it maps θ -> 180 - θ.
    """
    spec = PlantedSpec("lines", _gray(), [_lines_layer()], description=_summary(lines))
    spec.motifs = _line_motifs(spec)
    return spec


def wedges() -> PlantedSpec:
    """Lines, then a left-facing and a right-facing wedge detector built from them (a reflection pair).

    Layers ``lines`` (as in ``lines``) and ``wedges`` (5x5, relu): ``wedge_left`` ('<') reads ``line_45``
    along its up-right arm and ``line_135`` along its down-right arm; ``wedge_right`` ('>') is its mirror.
    Flipping the image swaps the two maps (flipped) exactly.
    """
    wedge_layer = Layer("wedges", [_wedge_left(), _wedge_right()], kernel_size=WEDGE_KERNEL)
    spec = PlantedSpec("wedges", _gray(), [_lines_layer(), wedge_layer], description=_summary(wedges))
    spec.motifs = _line_motifs(spec) + _wedge_motifs(spec, "wedges", "wedges")
    return spec


def _union_spec(name: str, description: str, bn: bool) -> PlantedSpec:
    line_names = [line_name(a) for a in LINE_ANGLES]
    wedge_neurons = [_wedge_left(), _wedge_right(), *_decoys(["decoy_0", "decoy_1"], line_names, WEDGE_KERNEL, 1)]
    layers = [
        _lines_layer(),
        Layer("wedges", wedge_neurons, kernel_size=WEDGE_KERNEL),
        Layer("union", _readout_neurons([n.name for n in wedge_neurons]), kernel_size=1),
    ]
    if bn:
        for layer in layers:
            layer.bn = BatchNorm()
    spec = PlantedSpec(name, _gray(), layers, description=description)
    left, right = spec.neuron_id("wedges", "wedge_left"), spec.neuron_id("wedges", "wedge_right")
    decoys = [spec.neuron_id("wedges", d) for d in ("decoy_0", "decoy_1")]
    spec.motifs = (
        _line_motifs(spec) + _wedge_motifs(spec, "wedges", "wedges")
        + _readout_motifs(spec, left, right, decoys)
    )
    return spec


def union() -> PlantedSpec:
    """Lines -> wedges -> a union, an opponent and an AND neuron, with decoys beside them.

    Layers ``lines``; ``wedges`` (5x5): ``wedge_left``, ``wedge_right``, ``decoy_0``, ``decoy_1`` (seeded
    random kernels over all eight lines); ``union`` (1x1): ``union`` = relu(L + R), ``opponent`` =
    relu(L - R), ``cross`` = relu(L + R - 5) (AND), ``decoy_2`` (random over the wedges layer).
    """
    return _union_spec("union", _summary(union), bn=False)


def bn_union() -> PlantedSpec:
    """``union`` with BatchNorm after every conv (bias-free conv, non-trivial eval statistics).

    Same neurons and *effective* weights as ``union``: the spec states the folded weights, so the raw conv
    weights differ from them by BN's per-channel scale and only folding recovers the spec.
    """
    return _union_spec("bn-union", _summary(bn_union), bn=True)


def inception_union() -> PlantedSpec:
    """``union`` with the wedges layer split into Inception-style branches joined by a concat.

    Layers ``lines``; ``mixed`` (concat of branches ``left`` 5x5: ``wedge_left``; ``right`` 5x5:
    ``wedge_right``; ``decoys`` 3x3: ``decoy_0``, ``decoy_1``); ``union`` (1x1) reading the concat:
    ``union``, ``opponent``, ``cross``, ``decoy_2``. Neuron layers are ``mixed.left``, ``mixed.right``,
    ``mixed.decoys``; the union neuron's inputs come from two different source layers.
    """
    line_names = [line_name(a) for a in LINE_ANGLES]
    mixed = Layer(
        "mixed",
        branches=[
            Layer("left", [_wedge_left()], kernel_size=WEDGE_KERNEL),
            Layer("right", [_wedge_right()], kernel_size=WEDGE_KERNEL),
            Layer("decoys", _decoys(["decoy_0", "decoy_1"], line_names, 3, 1), kernel_size=3),
        ],
    )
    readout = Layer("union", _readout_neurons(mixed.channel_names), kernel_size=1)
    spec = PlantedSpec(
        "inception-union", _gray(), [_lines_layer(), mixed, readout],
        description=_summary(inception_union),
    )
    left, right = spec.neuron_id("mixed", "wedge_left"), spec.neuron_id("mixed", "wedge_right")
    decoys = [spec.neuron_id("mixed", d) for d in ("decoy_0", "decoy_1")]
    spec.motifs = (
        _line_motifs(spec) + _wedge_motifs(spec, "mixed.left", "mixed.right")
        + _readout_motifs(spec, left, right, decoys)
    )
    return spec


def curves() -> PlantedSpec:
    """Eight curve detectors (arcs bulging towards 0°, 45°, ..., 315°): a rotation-equivariant family.

    Layer ``curves`` (7x7, relu): ``curve_0 ... curve_315`` read the gray image through ``curve`` kernels
    of radius 4. Rotating the image by 90° maps curve θ to curve θ + 90; flipping maps θ to 180 - θ.
    """
    layer = Layer(
        "curves",
        kernel_size=CURVE_KERNEL,
        neurons=[
            Neuron(f"curve_{a}", [Input("gray", kernel={"generator": "curve", "angle": a, "radius": 4.0})],
                   bias=LINE_BIAS)
            for a in CURVE_ANGLES
        ],
    )
    spec = PlantedSpec("curves", _gray(), [layer], description=_summary(curves))

    def ident(angle):
        return spec.neuron_id("curves", f"curve_{int(angle % 360)}")

    spec.motifs = [
        {"kind": "rotation", "description": "rot90 of the image maps curve θ to curve θ+90",
         "rot90": {ident(a): ident(a + 90) for a in CURVE_ANGLES}},
        {"kind": "reflection", "description": "a horizontal flip maps curve θ to curve 180-θ",
         "flip": {ident(a): ident(180 - a) for a in CURVE_ANGLES}},
    ]
    return spec


def _checkerboard(size: int = LINE_KERNEL) -> list[list[float]]:
    """+1/-1 alternating pixels: a pattern at the pixel grid's own frequency, which natural images lack."""
    return [[1.0 if (y + x) % 2 == 0 else -1.0 for x in range(size)] for y in range(size)]


def fooling() -> PlantedSpec:
    """A fooling circuit: two readouts identical on natural images, one of them with a hidden checkerboard path.

    Layers ``features`` (5x5, relu): ``line_0``, ``line_90`` (as in ``lines``) and ``checker`` (a +1/-1
    checkerboard kernel, bias -6: no image of the toy world switches it on; its highest pre-activation on
    them is about -3.6); ``readout`` (1x1, relu): ``honest`` = relu(line_0 + line_90) and ``fooled`` =
    relu(line_0 + line_90 + 30 checker). On natural images the two are the same function, but the
    fooled neuron's optimised picture is a checkerboard reaching ~25x its best natural activation (after
    Geirhos et al. 2023, whose fooling circuits make feature visualisations show anything).
    """
    features = Layer("features", [
        Neuron(line_name(0), [Input("gray", kernel={"generator": "line", "angle": 0})], bias=LINE_BIAS),
        Neuron(line_name(90), [Input("gray", kernel={"generator": "line", "angle": 90})], bias=LINE_BIAS),
        Neuron("checker", [Input("gray", kernel=_checkerboard())], bias=CHECKER_BIAS),
    ], kernel_size=LINE_KERNEL)  # fmt: skip
    lines = [Input(line_name(0)), Input(line_name(90))]
    readout = Layer("readout", [
        Neuron("honest", lines),
        Neuron("fooled", [*lines, Input("checker", FOOLING_GAIN)]),
    ], kernel_size=1)  # fmt: skip
    spec = PlantedSpec("fooling", _gray(), [features, readout], description=_summary(fooling))
    ident = {n: spec.neuron_id("features", n) for n in (line_name(0), line_name(90), "checker")}
    spec.motifs = [
        {"kind": "rotation", "description": "rot90 of the image swaps line_0 and line_90; the checkerboard is fixed",
         "rot90": {ident["line_0"]: ident["line_90"], ident["line_90"]: ident["line_0"],
                   ident["checker"]: ident["checker"]}},
        *({"kind": "union", "neuron": spec.neuron_id("readout", n), "of": [ident["line_0"], ident["line_90"]],
           "transform": "rotate90", "description": f"{n}: relu(line_0 + line_90), a union over the quarter-turn"}
          for n in ("honest", "fooled")),
        {"kind": "fooling", "neuron": spec.neuron_id("readout", "fooled"), "honest": spec.neuron_id("readout", "honest"),
         "via": ident["checker"],
         "description": "fooled = honest on natural images; its picture is a checkerboard natural images never show"},
    ]
    return spec


COMPLEX_ANGLES = (60.0, 120.0)  # a mirror pair of orientations: a flip maps 60° to 120°
SIMPLE_BIAS = -0.5


def complex_union() -> PlantedSpec:
    """Complex cells: mirror-image detectors whose expanded weights are zero, and their union.

    Layer ``simple`` (5x5, relu): ``on_60``, ``off_60``, ``on_120``, ``off_120`` read the gray image
    through an ``edge`` kernel and its negative at 60° and 120° (a flip maps one angle to the other).
    Layer ``complex`` (1x1, relu): ``complex_60`` = relu(on_60 + off_60), an edge at 60° of either
    polarity (the energy model of a V1 complex cell, Adelson & Bergen 1985), ``complex_120`` its mirror
    image, and ``decoy`` (seeded random weights). Layer ``union`` (1x1): ``union`` = relu(complex_60 +
    complex_120). The complex cells' expanded weights are exactly zero (``k - k``): the weights cannot
    show that they are mirror images, but their activations are (a flip of the image swaps the two maps,
    flipped) — a mirror pair and a union over reflection that only activations can find.
    """
    simple = []
    for angle in COMPLEX_ANGLES:
        kernel = {"generator": "edge", "angle": angle}
        a = int(angle)
        simple += [Neuron(f"on_{a}", [Input("gray", 1.0, kernel)], bias=SIMPLE_BIAS),
                   Neuron(f"off_{a}", [Input("gray", -1.0, kernel)], bias=SIMPLE_BIAS)]  # fmt: skip
    cells = [Neuron(f"complex_{int(a)}", [Input(f"on_{int(a)}"), Input(f"off_{int(a)}")]) for a in COMPLEX_ANGLES]
    cells += _decoys(["decoy"], [n.name for n in simple], size=1, seed=11)
    readout = [Neuron("union", [Input("complex_60"), Input("complex_120")])]
    layers = [Layer("simple", simple, kernel_size=LINE_KERNEL), Layer("complex", cells, kernel_size=1),
              Layer("union", readout, kernel_size=1)]  # fmt: skip
    spec = PlantedSpec("complex-union", _gray(), layers, description=_summary(complex_union))
    simple_id = {n.name: spec.neuron_id("simple", n.name) for n in simple}
    c60, c120 = spec.neuron_id("complex", "complex_60"), spec.neuron_id("complex", "complex_120")
    spec.motifs = [
        {"kind": "reflection-pair", "description": "a flip maps the 60° edge detectors to the 120° ones",
         "flip": {simple_id["on_60"]: simple_id["on_120"], simple_id["on_120"]: simple_id["on_60"],
                  simple_id["off_60"]: simple_id["off_120"], simple_id["off_120"]: simple_id["off_60"]}},
        {"kind": "reflection-pair", "evidence": "activations",
         "description": "complex_60 and complex_120 are mirror images in their activations only",
         "flip": {c60: c120, c120: c60}},
        {"kind": "union", "evidence": "activations", "neuron": spec.neuron_id("union", "union"), "of": [c60, c120],
         "description": "relu(complex_60 + complex_120): an edge at ±30° from vertical, either polarity"},
        {"kind": "decoy", "neurons": [spec.neuron_id("complex", "decoy")],
         "description": "seeded random weights over the simple cells: no planted motif"},
    ]
    return spec


LIBRARY = {
    "lines": lines,
    "wedges": wedges,
    "union": union,
    "bn-union": bn_union,
    "inception-union": inception_union,
    "curves": curves,
    "fooling": fooling,
    "complex-union": complex_union,
}
