"""The example configs that ship inside the package, and ``camstudy examples DIR``.

* ``demo.toml``: the demo study's stimuli (the offline stronger/weaker pair on the bundled
  photos);
* ``class-discrimination.toml`` and ``trust.toml``: the paper's two studies over them;
* ``hive-distinction.toml``: HIVE's distinction study (Kim et al. 2022) over them;
* ``paper.toml``: VGG-16 vs AlexNet on PASCAL VOC 2007 val, for a machine that has both.

They are package data, read with :mod:`importlib.resources`, so an installed wheel has
them as well as a checkout. ``camstudy demo`` reads them in place (it names its folders
itself); to edit one, ``camstudy examples DIR`` copies them into ``DIR``. Their relative
paths are relative to the config file, so the copies work together there::

    camstudy examples my-study                      # my-study/demo.toml, ...
    camstudy stimuli build my-study/demo.toml       # -> my-study/stimuli/
    camstudy db upgrade
    camstudy study create my-study/class-discrimination.toml   # stimuli = "stimuli"
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from camstudy.errors import UserError

NAMES = ("demo.toml", "class-discrimination.toml", "trust.toml", "hive-distinction.toml", "paper.toml")


@contextmanager
def path(name: str) -> Iterator[Path]:
    """A real file path of the shipped example ``name`` for the ``with`` block (the file
    itself in a checkout or an unpacked install; a temporary copy if it came from a zip)."""
    if name not in NAMES:
        raise UserError(f"no example config {name!r}; the examples are {', '.join(NAMES)}")
    with resources.as_file(resources.files(__name__) / name) as p:
        yield p


def copy(dest: Path, force: bool = False) -> list[Path]:
    """Copy every example into ``dest`` (created if needed); an existing file is kept
    (``UserError``) unless ``force``. Returns the written paths."""
    dest.mkdir(parents=True, exist_ok=True)
    targets = [dest / name for name in NAMES]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise UserError(f"{', '.join(existing)} exists already; pass --force to overwrite")
    for name, target in zip(NAMES, targets, strict=True):
        target.write_bytes((resources.files(__name__) / name).read_bytes())
    return targets


def run_examples(args: argparse.Namespace) -> int:
    dest = Path(args.dir)
    for target in copy(dest, force=args.force):
        print(target)
    print(
        f"next: camstudy stimuli build {dest / 'demo.toml'}  (into {dest / 'stimuli'}), then "
        f"camstudy db upgrade and camstudy study create {dest / 'class-discrimination.toml'}"
    )
    return 0


def add_examples_parser(sub) -> None:
    p = sub.add_parser("examples", help="copy the example configs into a folder, to edit them")
    p.add_argument("dir", metavar="DIR", help="the folder to copy them into (created if needed)")
    p.add_argument("--force", action="store_true", help="overwrite configs of the same names there")
    p.set_defaults(func=run_examples)
