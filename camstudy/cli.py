"""The ``camstudy`` command line.

Each subcommand lives in its stage's package; this module only parses arguments and turns
user errors (``ValueError``, ``TypeError``, missing files) into one line on stderr and exit
code 2 (``CAMSTUDY_DEBUG=1`` shows the traceback instead). Stage modules are imported lazily, so the study server's commands never import
torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from camstudy import __version__
from camstudy.errors import UserError


def _explain(args: argparse.Namespace) -> int:
    from stimuli.explain_cli import run_explain

    return run_explain(args)


def _stimuli(args: argparse.Namespace) -> int:
    from stimuli import cli

    return getattr(cli, f"run_{args.action}")(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camstudy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"camstudy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("explain", help="render explanations of images with one model")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", required=True, help="registry name or package.module:factory")
    p.add_argument("--weights", help="checkpoint file, or 'random' (default: the model's own)")
    p.add_argument("--layer", help="Grad-CAM layer (default: the paper's choice for the model)")
    p.add_argument(
        "--method",
        action="append",
        help="method(s), repeatable or comma-separated (default: gradcam, guided_backprop, guided_gradcam)",
    )
    p.add_argument("--target", default="top1", help="class index, class name, or top1 (default)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when present)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_explain)

    p = sub.add_parser("stimuli", help="build, merge and evaluate study stimuli")
    act = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = act.add_parser("build", help="plan the trials and render every stimulus of a config")
    b.add_argument("config", help="stimulus config (TOML)")
    b.add_argument("--out", help="output folder (default: the config's 'out')")
    b.add_argument("--shard", metavar="I/N", help="render only shard I of N (0 <= I < N)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    m = act.add_parser("merge", help="merge the shard folders of one config")
    m.add_argument("dirs", nargs="+", metavar="DIR")
    m.add_argument("--out", help="merged folder (default: the first DIR)")
    e = act.add_parser("evaluate", help="faithfulness, localization and sanity metrics")
    e.add_argument("target", metavar="CONFIG|DIR", help="a stimulus config, or a build folder")
    e.add_argument("--out", help="CSV file (default: evaluation.csv beside the build)")
    e.add_argument("--max-images", type=int, default=0, help="evaluate at most this many images (0: all)")
    e.add_argument("--patch", type=int, default=48, help="occlusion patch size in input pixels (default 48)")
    e.add_argument("--stride", type=int, default=24, help="occlusion stride (default 24)")
    e.add_argument(
        "--fill", type=float, default=0.0, help="occlusion fill in normalized input units (default 0: the mean colour)"
    )
    p.set_defaults(func=_stimuli)

    from analysis.cli import add_analyze_parser
    from analysis.power import add_power_parser
    from analysis.preregistration import add_preregister_parser
    from study.cli import add_parsers, add_simulate_parser

    add_parsers(sub)
    add_simulate_parser(sub)
    add_analyze_parser(sub)
    add_power_parser(sub)
    add_preregister_parser(sub)

    from camstudy.demo import add_demo_parser
    from camstudy.examples import add_examples_parser

    add_demo_parser(sub)
    add_examples_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, TypeError, FileNotFoundError) as e:
        if os.environ.get("CAMSTUDY_DEBUG"):
            raise
        print(f"camstudy {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"camstudy {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
