"""``camstudy explain``: explanations of a few images with one model, PNGs plus sidecars."""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import warnings
from pathlib import Path

import torch

from camstudy.errors import UserError
from camstudy.version import code_version
from gradcam import (
    ALL_METHODS,
    DEFAULT_METHODS,
    GUIDED_METHODS,
    PlainGradientWarning,
    explain,
    is_captum,
)
from gradcam.captum_adapter import attribution_class
from gradcam.render import render_methods, to_pil
from stimuli.images import load_image, resolve_device
from stimuli.manifest import grid_text
from stimuli.models import LoadedModel, load_model


def parse_methods(values: list[str] | None) -> tuple[str, ...]:
    """``--method`` values (repeatable, comma-separated) checked against the engine's list
    (and, for ``captum:<Class>``, against captum's classes)."""
    if not values:
        return DEFAULT_METHODS
    methods = [m.strip() for v in values for m in v.split(",") if m.strip()]
    for m in methods:
        if is_captum(m):
            attribution_class(m)  # a one-line error when captum or the class is missing
        elif m not in ALL_METHODS:
            raise UserError(f"unknown method {m!r}; choose from {', '.join(ALL_METHODS)} or captum:<Class>")
    return tuple(dict.fromkeys(methods))


def parse_target(value: str, class_names: list[str]):
    """``top1``, a class index, or a class name, to what :func:`gradcam.explain` takes."""
    if value == "top1":
        return top1_scores
    if re.fullmatch(r"-?\d+", value):
        index = int(value)
        if not 0 <= index < len(class_names):
            raise UserError(f"target {index} is out of range for {len(class_names)} classes")
        return index
    lowered = [c.lower() for c in class_names]
    if value.lower() in lowered:
        return lowered.index(value.lower())
    close = difflib.get_close_matches(value.lower(), lowered, n=3)
    hint = f" (did you mean {', '.join(repr(class_names[lowered.index(c)]) for c in close)}?)" if close else ""
    raise UserError(f"unknown class name {value!r}{hint}")


def top1_scores(logits: torch.Tensor) -> torch.Tensor:
    """Each image's own top-1 logit: explain what the model predicted, in one forward pass."""
    return logits.gather(1, logits.argmax(1, keepdim=True))[:, 0]


class FixedTop1:
    """:func:`top1_scores` with the classes fixed at the first call (the logits of the
    images themselves): Score-CAM and captum methods call the target again on the logits
    of perturbed copies, whose own top-1 class may differ."""

    def __init__(self) -> None:
        self.index: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            self.index = logits.detach().argmax(1, keepdim=True)
        return logits.gather(1, self.index)[:, 0]


def plain_gradient_line(model_name: str, methods, guided_rectifiers: int | None) -> str | None:
    """The warning for guided or deconv methods on a network without rectifiers, or None."""
    plain = [m for m in methods if m in GUIDED_METHODS]
    if guided_rectifiers != 0 or not plain:
        return None
    return (
        f"warning: {model_name} has no rectifier (ReLU, ReLU6) between input and score, so "
        f"{', '.join(plain)} {'shows' if len(plain) == 1 else 'show'} the plain input gradient, "
        "not a guided or deconv one"
    )


def top5(logits: torch.Tensor, class_names: list[str]) -> list[list[dict]]:
    """Per image, the five most probable classes with softmax probabilities."""
    probs = logits.float().softmax(1)
    p, i = probs.topk(min(5, probs.shape[1]), dim=1)
    return [
        [
            {"index": int(c), "name": class_names[int(c)], "probability": round(float(q), 6)}
            for q, c in zip(pr, ir, strict=True)
        ]
        for pr, ir in zip(p.cpu(), i.cpu(), strict=True)
    ]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def run_explain(args: argparse.Namespace) -> int:
    methods = parse_methods(args.method)
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    device = resolve_device(args.device)
    model = load_model(args.model, args.weights, device)
    target = parse_target(args.target, model.class_names)
    paths = [Path(p) for p in args.images]
    images = [load_image(p) for p in paths]  # all checked before any work
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(paths)
    warned = False
    for start in range(0, len(images), args.batch_size):
        chunk = slice(start, start + args.batch_size)
        n = _explain_batch(model, images[chunk], paths[chunk], stems[chunk], target, methods, args.layer, out, device)
        line = plain_gradient_line(model.name, methods, n)
        if line and not warned:
            print(f"camstudy explain: {line}", file=sys.stderr, flush=True)
            warned = True
    print(f"wrote {len(images)} explanation(s) with {model.name} to {out}/")
    return 0


def _unique_stems(paths: list[Path]) -> list[str]:
    stems, seen = [], {}
    for p in paths:
        s = _slug(p.stem) or "image"
        seen[s] = seen.get(s, 0) + 1
        stems.append(s if seen[s] == 1 else f"{s}-{seen[s]}")
    return stems


def _explain_batch(model: LoadedModel, images, paths, stems, target, methods, layer, out: Path, device) -> int | None:
    """Explain and write one batch; return ``Explanation.guided_rectifiers``."""
    pixels = torch.stack([model.preprocess.pixels(im) for im in images])  # one resize per image
    x = model.preprocess.normalize(pixels).to(device)
    photos = pixels.to(device).float().div_(255)
    if target is top1_scores:
        target = FixedTop1()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlainGradientWarning)  # run_explain prints one line instead
        ex = explain(model.module, x, target, layer=layer or model.layer, methods=methods)
    rendered = render_methods(ex, photos)
    targets = ex.targets if ex.targets is not None else ex.logits.argmax(1)
    tops = top5(ex.logits, model.class_names)
    tag = _slug(model.name)
    for i, (path, stem) in enumerate(zip(paths, stems, strict=True)):
        files = {}
        for method, imgs in rendered.items():
            name = f"{stem}.{tag}.{_slug(method)}.png"
            to_pil(imgs[i]).save(out / name)
            files[method] = name
        t = int(targets[i])
        sidecar = {
            "image": str(path),
            "model": model.name,
            "weights_sha256": model.weights_sha256,
            "weights_source": model.weights_source,
            "layer": ex.layer,
            "layer_grid": grid_text(ex.layer_grid),
            "layer_layout": ex.layer_layout,
            "methods": list(methods),
            "guided_rectifiers": ex.guided_rectifiers,
            "target": {"index": t, "name": model.class_names[t], "rule": "top1" if callable(target) else "given"},
            "top5": tops[i],
            "input_size": model.input_size,
            "files": files,
            "code_version": code_version(),
        }
        (out / f"{stem}.{tag}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return ex.guided_rectifiers
