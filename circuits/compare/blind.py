"""The auditor without a reference: synthesise a trigger for each class, then ask which neurons carry it.

With no model to diff against, the auditor has the tampered model and clean probe images only (never
the cases where it errs). A patch-trigger backdoor is a shortcut: a small patch that sends images of
every class to one class. For each class this optimises such a patch (``patch`` x ``patch`` pixels,
colour free) at every position of a grid, then again at the best few positions on more images (Adam on
the patch's logits; the model's own predictions say which images are "of another class", so no labels
are needed). A class whose patch works at the median position (``ANYWHERE``) is a natural feature and is
set aside; of the others, the class whose patch pushes images furthest into it (the mean margin of its
logit over the next class's) is named the ``target_class``, and its patch the ``trigger``. Counting the
flipped images instead ties where a planted trigger is weak: two classes' patches then differ by two or
three probe images, while a learned shortcut still pushes further past the boundary than a painted
natural feature does.

The suspects are the neurons that carry the winning patch: ranked by how far the patch drives their peak
activation above their clean mean, in clean standard deviations (:mod:`circuits.compare.response`),
those of the layers the output reads first. A shortcut to a class must move what the output reads; a
layer below can answer the patch hardest and still pass none of it on (on a curve-cnn backdoor the patch
drives `conv2` most, while only `conv3` neurons carry the real trigger). The first hidden layer (every layer
that reads only the image: :func:`~circuits.compare.response.pixel_layers`) is left out: an optimised
patch can push pixel-level detectors arbitrarily far out of the range of natural images, which says
nothing about a learned shortcut.

Before the trigger's carriers come neurons whose input weights are a near copy of another neuron's
(:mod:`circuits.compare.duplicates`): a trained layer has none, and a graft leaves one. Their ``score``
is that cosine, not an effect size: the suspects are ordered by kind of evidence first.

What it cannot tell apart: a natural shortcut (on the toy world a bright blob anywhere reads as "bird"
to most zoo models) from a planted one. The measured hit rates are in benchmarks/RESULTS_audit.md and,
on plants no rule was chosen on, benchmarks/RESULTS_blind.md.
"""

from __future__ import annotations

import torch

from circuits.errors import UsageError

COARSE = {"images": 12, "steps": 20}  # every grid position
FINE = {"images": 48, "steps": 50, "positions": 3}  # the best positions again, on more images
LR = 0.2
ANYWHERE = 0.95  # a class whose patch works at this share of positions or more (median) is a natural feature


def find_blind(model, data, *, patch: int | None = None, coarse: dict | None = None, fine: dict | None = None,
               seed: int = 0, progress=None, reference=None) -> dict:  # fmt: skip
    """``{"suspects": [{"neuron", "score", "evidence"}], "target_class", "trigger", "classes", "duplicates",
    "model", "data"}``: the auditor's ranking without a reference (see the module docstring).

    ``patch`` is the trigger's side in pixels (default: an eighth of the image side); ``coarse`` and
    ``fine`` override the optimisation budgets; ``progress(1)`` is called after each class (a tqdm bar's
    ``update``). With a ``reference`` (the model before the change) every class's patch is synthesised
    in it too, and the class named is the one whose patch gained most (``success - reference_success``):
    a natural shortcut works in both and cancels, so no rule about where a patch works is needed."""
    from circuits.compare.duplicates import duplicates
    from circuits.compare.response import effect_sizes, readout_layers, suspect_layers
    from circuits.data import load_data
    from circuits.graph import build_graph

    graph = build_graph(model)
    images = load_data(data, graph.input_shape) if isinstance(data, str) else data
    if images.dim() != 4:
        raise UsageError("the blind audit synthesises image patches: give a model that takes N x C x H x W images")
    side = patch or max(2, images.shape[-1] // 8)
    if not 0 < side < min(images.shape[-2:]):
        raise UsageError(f"--patch {side} does not fit in {tuple(images.shape[-2:])} images: give a smaller side")
    coarse, fine = {**COARSE, **(coarse or {})}, {**FINE, **(fine or {})}
    forward = _forward(graph)
    with torch.no_grad():
        logits = forward(images)
    predicted, n_classes = logits.argmax(1), int(logits.shape[1])
    classes = []
    for c in range(n_classes):
        others = images[predicted != c]
        if len(others) == 0:
            continue
        classes.append(_synthesise(forward, others, c, side, coarse, fine, seed))
        if progress:
            progress(1)
    if not classes:
        raise UsageError("the model gives every probe image one class: give probe data with more than one class")
    if reference is not None:
        best = _most_gained(classes, build_graph(reference), images, side, coarse, fine, seed, progress)
    else:
        placed = [k for k in classes if k["anywhere"] < ANYWHERE] or classes
        best = max(placed, key=lambda k: (k["margin"], -k["class"]))
    layers = suspect_layers(graph)
    others = images[predicted != best["class"]]
    stimulus = _paste(others, best["pattern"][None], [tuple(best["position"])])
    sizes = effect_sizes(graph, stimulus, others, layers)
    read = set(readout_layers(graph))
    ranked = sorted(((float(d), f"{layer}:{ch}", layer in read) for layer in layers for ch, d in enumerate(sizes[layer])),
                    key=lambda t: (not t[2], -t[0], t[1]))  # fmt: skip
    where = f"a {side}x{side} patch at row {best['position'][0]}, column {best['position'][1]}"
    copies = duplicates(graph)
    copied = {c["neuron"] for c in copies}
    return {
        "suspects": [{"neuron": c["neuron"], "score": c["cosine"],
                      "evidence": [f"its input weights are a copy of {c['twin']}'s (cosine {c['cosine']:.4f}; a "
                                   f"trained layer's closest pairs stay under 0.9): it computes another neuron's "
                                   f"function"]} for c in copies]
                    + [{"neuron": n, "score": d, "evidence": [f"driven {d:.1f} clean sd above its clean mean by "
                                                              f"the synthesised trigger ({where})"
                                                              + ("; the output reads its layer" if read_by_output else "")]}
                       for d, n, read_by_output in ranked if n not in copied],
        "target_class": best["class"],
        "trigger": {"patch": side, "position": best["position"], "success": best["success"],
                    "margin": best["margin"], "pattern": best["pattern"].tolist()},
        "classes": [{k: v for k, v in c.items() if k != "pattern"} for c in classes],
        "duplicates": [{k: c[k] for k in ("neuron", "twin", "cosine")} for c in copies],
        "reference": None, "data": data if isinstance(data, str) else f"a tensor of {len(images)} images",
    }  # fmt: skip


def _most_gained(classes: list[dict], reference, images, side, coarse, fine, seed, progress) -> dict:
    """The class whose best patch works most more often in the tampered model than in the reference; each
    class's record gains ``reference_success``."""
    forward = _forward(reference)
    with torch.no_grad():
        predicted = forward(images).argmax(1)
    for k in classes:
        others = images[predicted != k["class"]]
        k["reference_success"] = _synthesise(forward, others, k["class"], side, coarse, fine, seed)["success"] if len(others) else 0.0
        if progress:
            progress(1)
    return max(classes, key=lambda k: (k["success"] - k["reference_success"], -k["class"]))


def _synthesise(forward, images, c: int, side: int, coarse: dict, fine: dict, seed: int) -> dict:
    """The best patch sending ``images`` (of other classes) to class ``c``: a coarse pass over a grid of
    positions, then the best few again on more images."""
    height, width = images.shape[-2:]
    grid = [(r, q) for r in range(0, height - side + 1, side) for q in range(0, width - side + 1, side)]
    _, rates = _optimise(forward, images[: coarse["images"]], c, side, grid, coarse["steps"], seed)
    anywhere = float(rates.median())
    order = sorted(range(len(grid)), key=lambda k: (-float(rates[k]), k))[: fine["positions"]]
    positions = [grid[k] for k in order]
    patterns, rates = _optimise(forward, images[: fine["images"]], c, side, positions, fine["steps"], seed)
    k = int(rates.argmax())
    with torch.no_grad():
        logits = forward(_paste(images, patterns[k : k + 1], [positions[k]]))
    success = float((logits.argmax(1) == c).float().mean())
    return {"class": c, "success": success, "margin": float(_margin(logits, c).mean()), "position": list(positions[k]),
            "pattern": patterns[k], "anywhere": anywhere}  # fmt: skip


def _margin(logits: torch.Tensor, c: int) -> torch.Tensor:
    """Per image, class ``c``'s logit above the largest other: positive where the image reads as ``c``."""
    others = logits.clone()
    others[:, c] = -torch.inf
    return logits[:, c] - others.amax(1)


def _optimise(forward, images, c: int, side: int, positions, steps: int, seed: int):
    """One patch per position, all optimised in one batch; returns ``(patterns, success per position)``."""
    generator = torch.Generator().manual_seed(seed * 1000 + c)
    logits = torch.empty(len(positions), images.shape[1], side, side).uniform_(-2, 2, generator=generator)
    logits.requires_grad_()
    optimiser = torch.optim.Adam([logits], lr=LR)
    target = torch.full((len(positions) * len(images),), c)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(forward(_paste(images, torch.sigmoid(logits), positions)), target)
        logits.grad = torch.autograd.grad(loss, logits)[0]  # the weights get no gradient: the model is not touched
        optimiser.step()
    patterns = torch.sigmoid(logits).detach()
    with torch.no_grad():
        hits = forward(_paste(images, patterns, positions)).argmax(1) == c
    return patterns, hits.view(len(positions), len(images)).float().mean(1)


def _paste(images: torch.Tensor, patterns: torch.Tensor, positions) -> torch.Tensor:
    """Every image with each pattern at its position: ``len(positions) * N`` images, position-major."""
    side = patterns.shape[-1]
    out = images.unsqueeze(0).repeat(len(positions), 1, 1, 1, 1)
    for k, (r, q) in enumerate(positions):
        out[k, :, :, r : r + side, q : q + side] = patterns[k]
    return out.flatten(0, 1)


def _forward(graph):
    """The model's logits as a differentiable function of the images, in eval mode (the caller's mode is
    restored after each call)."""
    from circuits.graph.run import eval_mode

    def forward(x):
        with eval_mode(graph.gm):
            return graph.gm(x)

    return forward
