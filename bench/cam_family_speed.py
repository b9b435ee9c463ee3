"""CAM family speed: camstudy's engine against pytorch-grad-cam, method by method.

For each of Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, Eigen-CAM and Score-CAM, on
torchvision VGG-16 (layer ``features.29``) and ResNet-50 (``layer4``) with seeded random
weights, in one process:

* **engine**: ``gradcam.explain(model, x, targets, layer=..., methods=(method,))``, one
  method per call (Score-CAM with its default batch of 32 masked inputs per forward pass);
* **pytorch-grad-cam**: its class of the same method, built and released inside the timed
  call (``with Class(model, [layer]) as cam: cam(x, targets)``, as its README does), with
  ``ClassifierOutputTarget`` targets and its default Score-CAM batch of 16;
* **engine, one call**: the five one-pass methods (Grad-CAM++, XGrad-CAM, HiResCAM,
  LayerCAM, Eigen-CAM) from a single ``explain`` call, for reference.

Before timing, each pair's layer maps are checked to agree (max abs difference of the
min-max normalized upsampled maps <= 1e-3; tests/gradcam/test_cam_family.py does this at
the layer's resolution), so nothing broken is timed.

Score-CAM runs ``N * C`` masked forward passes (VGG-16: 512 channels, ResNet-50: 2048), so
at 224 px and batch 8 one call would take many minutes on a CPU: it is timed on its own,
smaller setting (``--score-size``, ``--score-batch``; default 48 px, one image: VGG-16's
map is 3x3 there, ResNet-50's 2x2).

Method: a fixed thread count (default: all cores), eval mode, the same seeded input for
both candidates, one warm-up call each (the agreement check), then repetitions alternating between the two
(the starting one rotated), medians reported.

Usage::

    python bench/cam_family_speed.py                  # 224 px, batch 4, 3 repeats (about 20 min on 2 cores)
    python bench/cam_family_speed.py --quick          # 112 px, batch 2, 2 repeats
    python bench/cam_family_speed.py --json cams.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from importlib import metadata

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from gradcam import explain

MODELS = {"vgg16": ("VGG-16", "features.29"), "resnet50": ("ResNet-50", "layer4")}
ONE_PASS = ("gradcam_pp", "xgradcam", "hirescam", "layercam", "eigencam")
METHODS = (*ONE_PASS, "scorecam")
DISPLAY = {
    "gradcam_pp": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "Eigen-CAM",
    "scorecam": "Score-CAM",
}
CLASSES = (243, 281, 1, 409, 530, 817, 948, 207)
GUARD = 1e-3  # normalized maps in [0, 1]; float32 sums of 512-2048 channels in another order


def peer_class(method: str):
    import pytorch_grad_cam as pgc

    return {
        "gradcam_pp": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM,
        "layercam": pgc.LayerCAM,
        "eigencam": pgc.EigenCAM,
        "scorecam": pgc.ScoreCAM,
    }[method]


def run_peer(method: str, model, layer, x, targets) -> np.ndarray:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with peer_class(method)(model, [layer]) as cam:
            return cam(x, [ClassifierOutputTarget(t) for t in targets])


def normalized(maps: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam's ``scale_cam_image``: ``(m - min) / (max + 1e-7)`` per image."""
    m = maps.flatten(1)
    m = m - m.amin(1, keepdim=True)
    return (m / (m.amax(1, keepdim=True) + 1e-7)).view_as(maps).numpy()


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def compare(method: str, model, layer_name: str, x: torch.Tensor, targets: list[int], repeats: int) -> dict:
    layer = dict(model.named_modules())[layer_name]
    ex = explain(model, x, targets, layer=layer_name, methods=(method,))
    ours = getattr(ex, method)
    theirs = run_peer(method, model, layer, x, targets)
    if method == "eigencam":  # the SVD's sign is open: compare each image up to sign
        flipped = normalized(
            F.interpolate((-_eigen_raw(model, layer, x)).clamp(min=0)[:, None], size=x.shape[-2:], mode="bilinear")[
                :, 0
            ]
        )
        err = max(
            min(
                np.abs(normalized(ours[i : i + 1]) - theirs[i : i + 1]).max(),
                np.abs(flipped[i : i + 1] - theirs[i : i + 1]).max(),
            )
            for i in range(x.shape[0])
        )
    else:
        err = float(np.abs(normalized(ours) - theirs).max())
    if err > GUARD:
        raise SystemExit(f"{method}: engine and pytorch-grad-cam disagree (max abs difference {err:.2e})")
    candidates = {
        "engine": lambda: explain(model, x, targets, layer=layer_name, methods=(method,)),
        "pytorch-grad-cam": lambda: run_peer(method, model, layer, x, targets),
    }
    times = {k: [] for k in candidates}
    names = list(candidates)
    for r in range(repeats):
        for k in names[r % 2 :] + names[: r % 2]:
            times[k].append(timed(candidates[k]))
    return {k: statistics.median(v) for k, v in times.items()} | {"repeats": repeats, "max_abs_diff": float(err)}


def _eigen_raw(model, layer, x) -> torch.Tensor:
    from gradcam.cams import eigen_projection

    got = {}
    h = layer.register_forward_hook(lambda _m, _i, o: got.setdefault("a", o.detach().clone()))
    with torch.no_grad():
        model(x)
    h.remove()
    return eigen_projection(got["a"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--score-size", type=int, default=48)
    p.add_argument("--score-batch", type=int, default=1)
    p.add_argument("--score-repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--quick", action="store_true", help="112 px, batch 2, 2 repeats; Score-CAM at 48 px, 1 image")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.batch, args.repeats = 112, 2, 2
        args.score_size, args.score_batch, args.score_repeats = 48, 1, 1
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    rows = []
    print(
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"{args.threads} torch threads, torch {torch.__version__}, grad-cam {metadata.version('grad-cam')}"
    )
    for name in args.models.split(","):
        display, layer_name = MODELS[name]
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        for method in methods:
            score = method == "scorecam"
            n, size, reps = (
                (args.score_batch, args.score_size, args.score_repeats)
                if score
                else (args.batch, args.size, args.repeats)
            )
            g = torch.Generator().manual_seed(1)
            x = torch.randn(n, 3, size, size, generator=g)
            targets = [CLASSES[i % len(CLASSES)] for i in range(n)]
            r = compare(method, model, layer_name, x, targets, reps)
            row = {"model": display, "method": DISPLAY[method], "input": f"{n}x3x{size}x{size}", **r}
            rows.append(row)
            print(
                f"  {display} {DISPLAY[method]}: engine {r['engine']:.3f} s, "
                f"pytorch-grad-cam {r['pytorch-grad-cam']:.3f} s",
                flush=True,
            )
        if set(ONE_PASS) <= set(methods):
            g = torch.Generator().manual_seed(1)
            x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
            targets = [CLASSES[i % len(CLASSES)] for i in range(args.batch)]
            call = functools.partial(explain, model, x, targets, layer=layer_name, methods=ONE_PASS)
            call()
            t = statistics.median(timed(call) for _ in range(args.repeats))
            rows.append(
                {
                    "model": display,
                    "method": "all five one-pass CAMs, one call",
                    "input": f"{args.batch}x3x{args.size}x{args.size}",
                    "engine": t,
                    "pytorch-grad-cam": None,
                    "repeats": args.repeats,
                }
            )
    print()
    print("| model | method | input | reps | engine s | pytorch-grad-cam s | engine / peer |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        peer = r["pytorch-grad-cam"]
        ratio = f"{r['engine'] / peer:.2f}" if peer else ""
        peer_s = f"{peer:.3f}" if peer else ""
        print(
            f"| {r['model']} | {r['method']} | {r['input']} | {r['repeats']} | {r['engine']:.3f} | {peer_s} | {ratio} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
