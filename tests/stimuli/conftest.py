"""Fixtures of the stimulus-stage tests: a tiny study on a CSV source with colour models."""

from pathlib import Path

import pytest
from PIL import Image

RGB = {"cat": (230, 30, 30), "dog": (30, 230, 30), "bird": (30, 30, 230)}


def _photo(path: Path, left: str, right: str | None = None) -> None:
    im = Image.new("RGB", (48, 48), (20, 20, 20))
    if right is None:
        im.paste(RGB[left], (8, 8, 40, 40))
    else:
        im.paste(RGB[left], (2, 4, 22, 44))
        im.paste(RGB[right], (26, 4, 46, 44))
    im.save(path)


@pytest.fixture
def study(tmp_path):
    """A CSV source with single-colour photos and two-colour composites, and its config."""
    return make_study(tmp_path)


def make_study(tmp_path: Path, weaker: str = "weak", methods: list[str] | None = None, hive: bool = False) -> Path:
    """Write the tiny study (images, CSV, config) into ``tmp_path``; return the config path.

    ``weaker``: the factory in tiny_models of the weaker model (``"checker"``: Deconvnet
    checkerboards); ``methods``: the config's methods (default: all of the default ones);
    ``hive``: also plan HIVE distinction (the tiny models have exactly four classes)."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    rows = ["path,labels,boxes"]
    for i, cat in enumerate(["cat", "cat", "dog", "bird"]):
        _photo(imgs / f"single{i}.png", cat)
        rows.append(f"images/single{i}.png,{cat},")
    for left, right in [("cat", "dog"), ("dog", "bird"), ("bird", "cat"), ("dog", "cat")]:
        name = f"{left}-{right}.png"
        _photo(imgs / name, left, right)
        rows.append(f"images/{name},{left};{right},{left} 0 0 24 48; {right} 24 0 48 48")
    (tmp_path / "images.csv").write_text("\n".join(rows) + "\n")
    config = tmp_path / "study.toml"
    head = f"methods = {methods!r}\n" if methods else ""
    config.write_text(
        head
        + """
seed = 3
out = "out"
display_size = 40
batch_size = 2
device = "cpu"
[models.stronger]
name = "tests.stimuli.tiny_models:strong"
[models.weaker]
name = "tests.stimuli.tiny_models:WEAKER"
[source]
type = "csv"
path = "images.csv"
[tasks.class_discrimination]
attention_checks = 2
[tasks.trust]
attention_checks = 2
baseline = true
""".replace("WEAKER", weaker)
        + ("[tasks.hive_distinction]\nattention_checks = 2\n" if hive else "")
    )
    return config
