"""Stimulus-build throughput against the engine's own floor, in one process.

1. ``camstudy stimuli build`` of a config (default ``examples/demo.toml``) into a fresh
   temporary folder: wall time and stimuli per second, everything included (loading
   models and images, the prediction pass, planning, rendering, PNG encoding, hashing,
   manifest).
2. The floor: the same engine calls on the same batches (same models, methods, targets),
   with the inputs prepared beforehand and nothing else done: the time the engine alone
   needs to produce those stimuli.

Ratio = build throughput / floor throughput = floor seconds / build seconds. Target
(issue 3): >= 0.8, i.e. image decoding and PNG writing overlap with the model work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import tempfile
import time
from pathlib import Path

import torch

from gradcam import explain
from stimuli.build import batches, build, prepare
from stimuli.config import ROLES, load_config
from stimuli.plan import PHOTO


def floor_seconds(config: Path) -> tuple[float, int]:
    """Seconds of the engine calls alone for every explanation batch of the build."""
    cfg = load_config(config)
    stage = prepare(cfg)
    work = []
    for batch in batches(stage.plan, cfg.batch_size):
        if batch[0].startswith(f"{PHOTO}:"):
            continue
        images = [stage.records[i].load() for i in batch]
        for role in ROLES:
            m = stage.models[role]
            x = torch.stack([m.preprocess(im) for im in images]).to(stage.device)
            t = torch.tensor([[stage.predictions[role][i].best_class[c] for c in stage.plan.explanations[i]] for i in batch])
            work.append((m, x, t.to(stage.device)))
    sync = torch.cuda.synchronize if stage.device.type == "cuda" else (lambda: None)
    for m, x, t in work[:2]:  # warm-up (CUDA kernels, allocator), as the build's first batch is
        explain(m.module, x, t, layer=m.layer, methods=cfg.methods)
    sync()
    start = time.perf_counter()
    for m, x, t in work:
        explain(m.module, x, t, layer=m.layer, methods=cfg.methods)
    sync()
    return time.perf_counter() - start, len(work)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="examples/demo.toml")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = build(cfg, Path(tmp) / "out", progress=False)
        wall = time.perf_counter() - start
    floor, calls = floor_seconds(Path(args.config))
    n = summary["stimuli"]
    print(f"Stimulus build throughput, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {summary['device']}")
    print()
    print("| config | stimuli | build s | stimuli/s | engine floor s (calls) | floor stimuli/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.config} | {n} | {wall:.1f} | {n / wall:.2f} | {floor:.1f} ({calls}) | {n / floor:.2f} | {floor / wall:.2f} |")
    print()
    print(f"build phases: prepare (models, images, prediction pass, plan) {summary['prepare_seconds']:.1f} s, "
          f"render loop {summary['render_seconds']:.1f} s of which engine calls {summary['engine_seconds']:.1f} s")
    verdict = "PASS" if floor / wall >= 0.8 else "MISS"
    print(f"target: build throughput >= 0.8 x the engine floor: {floor / wall:.2f} {verdict}")


if __name__ == "__main__":
    main()
