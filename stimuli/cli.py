"""``camstudy stimuli build | merge | evaluate``: argument handling and printed summaries."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from camstudy import examples
from camstudy.errors import UserError
from stimuli.config import load_config


def run_build(args: argparse.Namespace) -> int:
    from stimuli.build import build, parse_shard

    cfg = load_config(args.config)
    shard = parse_shard(args.shard)
    out = Path(args.out) if args.out else cfg.out
    shipped = Path(examples.__file__).resolve().parent
    if out.resolve().is_relative_to(shipped):
        raise UserError(
            f"{out} is inside the installed example configs: copy them first (camstudy examples DIR) or pass --out"
        )
    summary = build(cfg, out, shard, progress=not args.quiet)
    plan = __import__("json").loads((out / "plan.json").read_text())
    print(plan_table(plan["items"]))
    rate = summary["stimuli"] / summary["seconds"] if summary["seconds"] else 0.0
    print(
        f"{summary['stimuli']} stimuli ({summary['rendered']} rendered, {summary['reused']} reused) "
        f"for {summary['items']} items in {summary['seconds']:.1f} s ({rate:.1f} stimuli/s; "
        f"engine {summary['engine_seconds']:.1f} s) on {summary['device']}, shard {shard[0]}/{shard[1]}"
    )
    print(f"manifest: {out / 'manifest.csv'}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from stimuli.merge import merge

    dirs = [Path(d) for d in args.dirs]
    out = Path(args.out) if args.out else dirs[0]
    summary = merge(dirs, out)
    print(f"merged {len(dirs)} shards: {summary['stimuli']} stimuli; manifest: {out / 'manifest.csv'}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from stimuli.evaluate import run_evaluate as run

    return run(args)


def plan_table(items: list[dict]) -> str:
    """Item counts per task, method and model, attention checks apart."""
    counts = Counter(
        (it["task"], "check" if it["is_attention_check"] else it["method"], it.get("model_role", "pair"))
        for it in items
    )
    lines = ["| task | method | model | items |", "|---|---|---|---:|"]
    lines += [f"| {t} | {m} | {r} | {n} |" for (t, m, r), n in sorted(counts.items())]
    return "\n".join(lines)
