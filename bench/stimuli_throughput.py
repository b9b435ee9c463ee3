"""Stimulus-build throughput against the engine's own floor, in one process.

1. ``camstudy stimuli build`` of a config (default the shipped example,
   ``camstudy/examples/demo.toml``) into a fresh temporary folder: wall time and stimuli
   per second, everything included (loading models and images, the engine calls, which
   also give the predictions that planning needs, planning, rendering, PNG encoding,
   hashing, manifest).
2. The floor: the engine calls needed to produce the stimuli the build wrote, and nothing
   else: one :func:`gradcam.explain` call per model on each batch of the *planned*
   explanations (``plan.json``; batched as the build batches), with the classes the
   manifest records as targets and the inputs prepared beforehand. The build makes the
   same calls, except that it batches every candidate the plan might use (an image the
   plan then drops, e.g. for trust, costs the build its share of a call, not the floor);
   it runs no separate prediction pass, because those calls' logits are the predictions.

Ratio = build throughput / floor throughput = floor seconds / build seconds. Target
(issue 3): >= 0.8, i.e. image decoding and PNG writing overlap with the model work.
With ``--repeat``, the table's ratio is fastest floor / fastest build (other processes on
a shared machine only ever add time); the median of the per-pair ratios is printed too,
because on a noisy machine the two can differ.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gradcam import explain
from stimuli.build import build, prepare
from stimuli.config import ROLES, load_config
from stimuli.manifest import read_manifest
from stimuli.plan import explanation_id
from stimuli.schedule import batches


def floor_seconds(config: Path, out: Path) -> tuple[float, int]:
    """Seconds of the engine calls alone for the planned explanations of the build in ``out``."""
    cfg = load_config(config)
    stage = prepare(cfg)
    plan = json.loads((out / "plan.json").read_text())["explanations"]
    target = {r["stimulus_id"]: r["target_class"] for r in read_manifest(out)["rows"]}
    method = cfg.methods[0]
    work = []
    for batch in batches(plan, cfg.batch_size):
        images = [stage.records[i].load() for i in batch]
        for role in ROLES:
            m = stage.models[role]
            x = torch.stack([m.preprocess(im) for im in images]).to(stage.device)
            t = torch.tensor([[target[explanation_id(i, role, method, c)] for c in plan[i]] for i in batch])
            work.append((m, x, t.to(stage.device)))
    sync = torch.cuda.synchronize if stage.device.type == "cuda" else (lambda: None)
    # Warm-up: one call per distinct model and shape (oneDNN and CUDA kernels are chosen and
    # weights reordered per shape), so the timed calls are the engine's steady state.
    shapes = {}
    for m, x, t in work:
        shapes.setdefault((id(m), tuple(x.shape), tuple(t.shape)), (m, x, t))
    for m, x, t in shapes.values():
        explain(m.module, x, t, layer=m.layer, methods=cfg.methods)
    sync()
    start = time.perf_counter()
    for m, x, t in work:
        explain(m.module, x, t, layer=m.layer, methods=cfg.methods)
    sync()
    return time.perf_counter() - start, len(work)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="camstudy/examples/demo.toml")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="build and floor this many times, alternating; the table shows the fastest of each "
        "(on a shared machine other processes only ever add time)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    walls, floors, summaries = [], [], []
    for _ in range(max(1, args.repeat)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summaries.append(build(cfg, Path(tmp) / "out", progress=False))
            walls.append(time.perf_counter() - start)
            floor, calls = floor_seconds(Path(args.config), Path(tmp) / "out")
            floors.append(floor)
    wall, floor = min(walls), min(floors)
    summary = summaries[walls.index(wall)]
    n = summary["stimuli"]
    print(
        f"Stimulus build throughput, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {summary['device']}"
    )
    print()
    print("| config | stimuli | build s | stimuli/s | engine floor s (calls) | floor stimuli/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.config} | {n} | {wall:.1f} | {n / wall:.2f} | {floor:.1f} ({calls}) | {n / floor:.2f} | {floor / wall:.2f} |"
    )
    print()
    if len(walls) > 1:
        pairs = sorted(f / w for w, f in zip(walls, floors, strict=True))
        print(
            f"fastest of {len(walls)}; all runs, build s: {', '.join(f'{w:.1f}' for w in walls)}; "
            f"floor s: {', '.join(f'{f:.1f}' for f in floors)}"
        )
        print(
            f"ratio of each build to the floor measured right after it: {', '.join(f'{r:.2f}' for r in pairs)} "
            f"(median {statistics.median(pairs):.2f})"
        )
    print(
        f"build phases: prepare (models, image list, candidates) {summary['prepare_seconds']:.1f} s, "
        f"render loop {summary['render_seconds']:.1f} s of which engine calls {summary['engine_seconds']:.1f} s; "
        f"explained but unused by the plan: {summary['explained_unused']} stimuli"
    )
    verdict = "PASS" if floor / wall >= 0.8 else "MISS"
    print(f"target: build throughput >= 0.8 x the engine floor: {floor / wall:.2f} {verdict}")


if __name__ == "__main__":
    main()
