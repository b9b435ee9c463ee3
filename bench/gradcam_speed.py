"""Guided Grad-CAM speed: camstudy's engine against captum, pytorch-grad-cam and the floor.

What is measured, per model, in wall seconds per call (median of interleaved repetitions):

* **floor**: one forward pass plus one backward pass to the input,
  ``torch.autograd.grad(score.sum(), x)``. Guided Grad-CAM needs at least that much: the
  guided image is a gradient with respect to the input, and the CAM's layer gradient lies
  on the same path. No implementation can beat the floor by more than noise.
* **forward**: the forward pass alone, with the input requiring grad (the graph is built,
  as in every explanation call, but no backward runs). ``floor - forward`` is the cost of
  one backward pass to the input, the unit of the "extra class" column.
* **engine**: ``gradcam.explain(model, x, targets, methods=("guided_gradcam",))`` for one
  class per image, and again for two classes per image (``(N, 2)`` targets), which reuses
  the forward pass: its extra cost is reported in backward passes.
* **captum**: ``captum.attr.GuidedGradCam(model, layer).attribute(x, target=targets)``.
* **pytorch-grad-cam**: ``GradCAM`` + ``GuidedBackpropReLUModel`` on two deep copies of the
  model, combined as its README does (``cam_mask * gb``); its guided backprop takes one
  image per call, so it loops over the batch.

Ratios are to the floor. The engine's targets (from the issue) are at most 1.15x the floor
on VGG-16 and 1.35x on AlexNet, for one class per image.

Method: one process, the same seeded input for every candidate of a model, a fixed thread
count, eval mode, no ``torch.no_grad`` around explanation calls. Each callable is warmed up
twice; then the repetitions go round-robin over all candidates of the model (with the
starting candidate rotated), so drift on a shared machine hits them all alike.

Before timing, the engine's ``guided_backprop`` is checked against captum's
``GuidedBackprop`` (relative max error <= 1e-4), so a broken engine is never timed.

Usage::

    python bench/gradcam_speed.py                       # all four models, batch 8
    python bench/gradcam_speed.py --quick --models alexnet,mobilenet_v2
    python bench/gradcam_speed.py --json bench.json
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn

from gradcam import default_layer, explain

MODELS = ("alexnet", "vgg16", "efficientnet_lite2", "mobilenet_v2")
TORCHVISION_RANDOM = {"alexnet", "vgg16"}
DISPLAY = {
    "alexnet": "AlexNet",
    "vgg16": "VGG-16",
    "efficientnet_lite2": "EfficientNet-Lite2",
    "mobilenet_v2": "MobileNetV2",
}
# The targets: engine time / floor time, one class per image.
TARGETS = {"vgg16": 1.15, "alexnet": 1.35}
# Fixed ImageNet classes, cycled over the batch: the first and (for two classes) second
# class of each image.
CLASSES_1 = (243, 281, 1, 409, 530, 817, 948, 207)
CLASSES_2 = (282, 285, 2, 417, 531, 511, 950, 208)
GUARD_TOLERANCE = 1e-4
ENGINE_METHOD = ("guided_gradcam",)

# Column order of the timing; the first two are the reference measurements.
FLOOR, FORWARD, ENGINE, ENGINE_2, CAPTUM, PGC = (
    "floor",
    "forward",
    "engine",
    "engine_2cls",
    "captum",
    "pytorch_grad_cam",
)


@dataclass
class Subject:
    """A model to time, with the input and the layer every candidate explains."""

    name: str
    module: nn.Module
    size: int
    layer: str
    engine_layer: str | None  # what explain() is given: None = its default choice
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    """Timings of one model: raw seconds per repetition, and why a peer did not run."""

    name: str
    input_shape: tuple[int, ...]
    layer: str
    times: dict[str, list[float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def median(self, key: str) -> float | None:
        ts = self.times.get(key)
        return statistics.median(ts) if ts else None

    def ratio(self, key: str) -> float | None:
        t, floor = self.median(key), self.median(FLOOR)
        return None if t is None or not floor else t / floor

    def extra_class_backwards(self) -> float | None:
        """(t_2cls - t_1cls) in units of one backward pass to the input."""
        t1, t2 = self.median(ENGINE), self.median(ENGINE_2)
        floor, fwd = self.median(FLOOR), self.median(FORWARD)
        if None in (t1, t2, floor, fwd) or floor <= fwd:
            return None
        return (t2 - t1) / (floor - fwd)


# --------------------------------------------------------------------------- models


def build_subject(name: str) -> Subject:
    """Seeded random torchvision weights for AlexNet/VGG-16, real weights for the pair."""
    if name in TORCHVISION_RANDOM:
        torch.manual_seed(0)
        module = torchvision.models.get_model(name, weights=None).eval().to(DEVICE)
        layer = default_layer(module)
        return Subject(name, module, 224, layer, None, ["seeded random weights"])
    from stimuli.models import load_model

    loaded = load_model(name, device=DEVICE)
    return Subject(name, loaded.module.eval(), loaded.input_size, loaded.layer, loaded.layer, ["real weights"])


DEVICE = torch.device("cpu")  # set from --device in main()


def make_input(batch: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, size, size, generator=g).to(DEVICE)


def make_targets(batch: int) -> tuple[list[int], torch.Tensor]:
    """``N`` class indices as a list, and an ``(N, 2)`` tensor of two classes per image."""
    first = [CLASSES_1[i % len(CLASSES_1)] for i in range(batch)]
    second = [CLASSES_2[i % len(CLASSES_2)] for i in range(batch)]
    return first, torch.tensor([first, second]).T.contiguous()


def rectifier_kinds(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if isinstance(m, nn.ReLU | nn.Hardtanh)}


def layer_calls(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> int:
    """How many times ``layer`` runs in one forward pass."""
    calls = 0

    def hook(*_: Any) -> None:
        nonlocal calls
        calls += 1

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        handle.remove()
    return calls


# --------------------------------------------------------------------------- guard


def guard_guided_backprop(model: nn.Module, x: torch.Tensor, targets: list[int]) -> float:
    """Relative max error of the engine's guided backprop against captum's; raises if large."""
    from captum.attr import GuidedBackprop

    ours = explain(model, x, targets, methods=("guided_backprop",)).guided_backprop
    theirs = GuidedBackprop(model).attribute(x.clone(), target=targets).detach()
    err = ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30)).item()
    if not err <= GUARD_TOLERANCE:
        raise SystemExit(
            f"correctness guard failed: engine guided_backprop differs from captum's "
            f"GuidedBackprop by {err:.2e} (relative max) > {GUARD_TOLERANCE:g}; not timing"
        )
    return err


def captum_can_check(model: nn.Module) -> bool:
    """captum guides nn.ReLU modules only; ReLU6/Hardtanh would get plain gradients."""
    return rectifier_kinds(model) == {nn.ReLU}


def run_guard(subjects: list[Subject], batch: int) -> None:
    """Check the engine on the first model captum can check, else on a seeded AlexNet."""
    targets = make_targets(batch)[0]
    for s in subjects:
        if captum_can_check(s.module):
            x = make_input(batch, s.size)
            err = guard_guided_backprop(s.module, x, targets)
            print(f"guard: {DISPLAY[s.name]} guided_backprop vs captum: rel max err {err:.1e} OK")
            return
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None).eval().to(DEVICE)
    err = guard_guided_backprop(alexnet, make_input(2, 224), targets[:2])
    print(
        "guard: no selected model has only nn.ReLU rectifiers (captum guides nothing else); "
        f"checked a seeded AlexNet instead: rel max err {err:.1e} OK"
    )


# --------------------------------------------------------------------------- candidates


def floor_fn(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> Callable[[], Any]:
    def run() -> Any:
        xi = x.detach().requires_grad_(True)
        out = model(xi)
        return torch.autograd.grad(out.gather(1, t[:, None]).sum(), xi)

    return run


def forward_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def run() -> Any:
        xi = x.detach().requires_grad_(True)
        return model(xi)

    return run


def engine_fn(model: nn.Module, x: torch.Tensor, targets: Any, layer: str | None) -> Callable[[], Any]:
    def run() -> Any:
        return explain(model, x, targets, layer=layer, methods=ENGINE_METHOD).guided_gradcam

    return run


def captum_fn(model: nn.Module, x: torch.Tensor, targets: list[int], layer: str) -> Callable[[], Any]:
    from captum.attr import GuidedGradCam

    ggc = GuidedGradCam(model, model.get_submodule(layer))

    def run() -> Any:
        return ggc.attribute(x, target=targets)

    return run


def pgc_fn(model: nn.Module, x: torch.Tensor, targets: list[int], layer: str, notes: list[str]) -> Callable[[], Any]:
    """pytorch-grad-cam's Guided Grad-CAM, each part on its own deep copy of ``model``.

    Works around, on its copies only, what its API cannot take; each workaround is
    appended to ``notes``. Raises RuntimeError (with the reason) when it cannot run.
    """
    from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    copy_a = copy.deepcopy(model)
    target_layer = copy_a.get_submodule(layer)
    calls = layer_calls(copy_a, target_layer, x)
    if calls > 1:
        target_layer = _pgc_last_call_layer(copy_a, layer, calls, notes)
    cam = GradCAM(model=copy_a, target_layers=[target_layer])
    cam_targets = [ClassifierOutputTarget(c) for c in targets]
    try:
        cam(input_tensor=x, targets=cam_targets)
    except RuntimeError as e:  # the in-place ReLU failure reported in the issue
        first = str(e).splitlines()[0]
        for m in copy_a.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        cam = GradCAM(model=copy_a, target_layers=[target_layer])
        notes.append(f"pytorch-grad-cam: {first!r} -> set inplace=False on its GradCAM copy's ReLUs")
    else:
        if getattr(target_layer, "inplace", False):
            notes.append(
                f"pytorch-grad-cam: ran on the in-place {type(target_layer).__name__} layer "
                f"{layer} unchanged (no failure with grad-cam {_version('grad-cam')}); "
                "no workaround applied"
            )
    gb_model = GuidedBackpropReLUModel(model=copy.deepcopy(model), device=x.device)

    def run() -> np.ndarray:
        masks = cam(input_tensor=x, targets=cam_targets)  # (N, H, W), min-max scaled
        out = []
        for i, c in enumerate(targets):  # its guided backprop takes one image per call
            gb = gb_model(x[i : i + 1].clone(), target_category=c)  # (H, W, 3)
            out.append(masks[i][..., None] * gb)
        return np.stack(out)

    return run


def _pgc_last_call_layer(model: nn.Module, layer: str, calls: int, notes: list[str]) -> nn.Module:
    """pytorch-grad-cam reads a module's FIRST call; give the last call its own module.

    EfficientNet-Lite's shared ``_swish`` runs on the stem first and on the head conv last
    (the paper's layer). On the copy, ``_swish`` becomes a stateless switch between two
    copies of itself, picked by channel count, and GradCAM targets the head's copy: the
    same tensor, the same gradient, the same arithmetic.
    """
    shared = model.get_submodule(layer)
    bn0, bn1 = getattr(model, "_bn0", None), getattr(model, "_bn1", None)
    if (
        layer != "_swish"
        or not isinstance(bn0, nn.BatchNorm2d)
        or not isinstance(bn1, nn.BatchNorm2d)
        or bn0.num_features == bn1.num_features
    ):
        raise RuntimeError(f"layer {layer} runs {calls} times per forward and pytorch-grad-cam keeps the first")
    switch = _HeadSwitch(shared, bn1.num_features)
    model._swish = switch
    notes.append(
        "pytorch-grad-cam: the shared _swish runs twice per forward and it reads the first "
        "(stem) call; its GradCAM copy splits _swish by channel count into stem and head "
        "copies and targets the head one (same tensor and gradient as the engine's layer)"
    )
    return switch.head


class _HeadSwitch(nn.Module):
    """Runs ``head`` on tensors with ``channels`` channels and ``other`` on the rest."""

    def __init__(self, act: nn.Module, channels: int) -> None:
        super().__init__()
        self.other = copy.deepcopy(act)
        self.head = copy.deepcopy(act)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.head if x.shape[1] == self.channels else self.other)(x)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- timing


def _sync() -> None:
    """Wait for queued CUDA work, so a timed call includes its kernels (no-op on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_round_robin(
    cands: dict[str, Callable[[], Any]], reps: int, warmup: int = 2, budget: float = 0.0
) -> dict[str, list[float]]:
    """Warm each callable up, then time rounds over all of them, interleaved.

    ``reps`` rounds at least; with a ``budget`` (seconds), as many more rounds as fit in it
    (at most 41): cheap models get many repetitions, so a median on this shared machine is
    not at the mercy of a few disturbed runs.
    """
    t_warm = time.perf_counter()
    for fn in cands.values():
        for _ in range(warmup):
            fn()
    _sync()
    per_round = (time.perf_counter() - t_warm) / warmup
    if budget > 0 and per_round > 0:
        reps = max(reps, min(41, int(budget / per_round)))
    names = list(cands)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            _sync()
            t0 = time.perf_counter()
            cands[n]()
            _sync()
            times[n].append(time.perf_counter() - t0)
    return times


def bench_model(s: Subject, batch: int, reps: int, budget: float = 0.0) -> Result:
    x = make_input(batch, s.size)
    targets, targets2 = make_targets(batch)
    t = torch.tensor(targets, device=DEVICE)
    targets2 = targets2.to(DEVICE)
    res = Result(s.name, tuple(x.shape), s.layer, notes=list(s.notes))
    others = sorted(k.__name__ for k in rectifier_kinds(s.module) - {nn.ReLU})
    if others:
        res.notes.append(
            f"captum and pytorch-grad-cam guide nn.ReLU modules only: on this model "
            f"({', '.join(others)}) their 'guided backprop' is the plain input gradient"
        )
    cands: dict[str, Callable[[], Any]] = {
        FLOOR: floor_fn(s.module, x, t),
        FORWARD: forward_fn(s.module, x),
        ENGINE: engine_fn(s.module, x, targets, s.engine_layer),
        ENGINE_2: engine_fn(s.module, x, targets2, s.engine_layer),
    }
    _check_engine_shapes(cands, x)
    peers = {
        CAPTUM: lambda: captum_fn(s.module, x, targets, s.layer),
        PGC: lambda: pgc_fn(s.module, x, targets, s.layer, res.notes),
    }
    for key, setup in peers.items():
        try:
            fn = setup()
            fn()  # a trial call: a peer that fails is reported, not timed
        except Exception as e:  # noqa: BLE001 - a peer may fail in any way; report it as n/a
            res.unavailable[key] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            continue
        cands[key] = fn
    res.times = time_round_robin(cands, reps, budget=budget)
    return res


def _check_engine_shapes(cands: dict[str, Callable[[], Any]], x: torch.Tensor) -> None:
    n, c, h, w = x.shape
    one, two = cands[ENGINE](), cands[ENGINE_2]()
    assert tuple(one.shape) == (n, c, h, w), one.shape
    assert tuple(two.shape) == (n, 2, c, h, w), two.shape


# --------------------------------------------------------------------------- report


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def meta(args: argparse.Namespace, batch: int, reps: int) -> dict[str, Any]:
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu": cpu_model(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "captum": _version("captum"),
        "grad_cam": _version("grad-cam"),
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu",
        "batch": batch,
        "reps": reps,
        "quick": args.quick,
    }


def _cell(r: Result, key: str, with_ratio: bool = True) -> str:
    if key in r.unavailable:
        return "n/a"
    t = r.median(key)
    if t is None:
        return "-"
    ratio = r.ratio(key)
    return f"{t:.3f} ({ratio:.2f}x)" if with_ratio and ratio is not None else f"{t:.3f}"


def markdown_table(results: list[Result], info: dict[str, Any]) -> str:
    lines = [
        f"Guided Grad-CAM speed, {info['date_utc']}; CPU: {info['cpu']} "
        f"(platform.processor(): {info['processor'] or 'empty'}); torch {info['torch']}, "
        f"captum {info['captum']}, grad-cam {info['grad_cam']}; threads {info['threads']}; "
        f"device {info['device']}; batch {info['batch']}; medians of interleaved reps (n per model below)",
        "",
        "| model | input | reps | floor s | forward s | engine s (ratio) | engine 2 classes s (ratio) "
        "| extra class (backwards) | captum s (ratio) | pytorch-grad-cam s (ratio) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        extra = r.extra_class_backwards()
        lines.append(
            "| "
            + " | ".join(
                [
                    DISPLAY[r.name],
                    "x".join(map(str, r.input_shape)),
                    str(len(r.times.get(FLOOR, []))),
                    _cell(r, FLOOR, with_ratio=False),
                    _cell(r, FORWARD, with_ratio=False),
                    _cell(r, ENGINE),
                    _cell(r, ENGINE_2),
                    "-" if extra is None else f"{extra:.2f}",
                    _cell(r, CAPTUM),
                    _cell(r, PGC),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def notes_text(results: list[Result]) -> str:
    lines = []
    for r in results:
        lines.append(f"- {DISPLAY[r.name]}: Grad-CAM layer {r.layer}; " + "; ".join(r.notes))
        for key, why in r.unavailable.items():
            lines.append(f"  - {key}: n/a ({why})")
    return "Notes:\n" + "\n".join(lines)


def target_checks(results: list[Result]) -> list[dict[str, Any]]:
    checks = []
    for r in results:
        if r.name in TARGETS and r.ratio(ENGINE) is not None:
            ratio, limit = r.ratio(ENGINE), TARGETS[r.name]
            checks.append({"model": r.name, "ratio": ratio, "limit": limit, "pass": ratio <= limit})
    return checks


def write_json(path: str, info: dict[str, Any], results: list[Result], checks: list[dict[str, Any]]) -> None:
    data = {
        "meta": info,
        "models": {
            r.name: {
                "input_shape": list(r.input_shape),
                "layer": r.layer,
                "times_s": r.times,
                "median_s": {k: r.median(k) for k in r.times},
                "ratio_to_floor": {k: r.ratio(k) for k in r.times if k != FLOOR},
                "extra_class_backwards": r.extra_class_backwards(),
                "unavailable": r.unavailable,
                "notes": r.notes,
            }
            for r in results
        },
        "targets": checks,
    }
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--batch", type=int, default=None, help="images per call (default 8; quick: 2)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 7; quick: 3)")
    p.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated subset of {','.join(MODELS)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: batch 2, 3 reps")
    p.add_argument(
        "--budget",
        type=float,
        default=90.0,
        help="seconds of timed rounds per model: more reps where they are cheap (default 90)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda; CUDA timings synchronize")
    p.add_argument("--json", metavar="PATH", help="also write the raw numbers as JSON")
    args = p.parse_args(argv)
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(MODELS))
    if unknown or not wanted:
        p.error(f"--models: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODELS)}")
    args.models = [m for m in MODELS if m in wanted]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    batch = args.batch or (2 if args.quick else 8)
    reps = args.reps or (3 if args.quick else 7)
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    try:
        import cv2  # pytorch-grad-cam resizes with OpenCV: give it the same thread count

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")

    subjects = [build_subject(name) for name in args.models]
    run_guard(subjects, batch)
    results = []
    for s in subjects:
        print(f"timing {DISPLAY[s.name]} ...", flush=True)
        results.append(bench_model(s, batch, reps, 0.0 if args.quick else args.budget))
        gc.collect()

    info = meta(args, batch, reps)
    checks = target_checks(results)
    print()
    print(markdown_table(results, info))
    print()
    print(notes_text(results))
    for c in checks:
        verdict = "PASS" if c["pass"] else "MISS"
        print(
            f"target {DISPLAY[c['model']]}: engine one class {c['ratio']:.3f}x floor (<= {c['limit']:.2f}x) {verdict}"
        )
    if args.json:
        write_json(args.json, info, results, checks)
        print(f"raw numbers written to {args.json}")


if __name__ == "__main__":
    main()
