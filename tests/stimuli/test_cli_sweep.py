"""``camstudy explain`` and ``stimuli build`` on every torchvision classifier, random weights.

The engine's own sweep (``tests/gradcam/test_torchvision_sweep.py``) checks the maps; this
one checks the two commands a researcher runs: each model of that sweep (the same very
large ones skipped) loads with ``--weights random`` at its registry preprocessing,
explains a photo through ``camstudy explain``, and renders a small class-discrimination
build through ``stimuli build``; the sidecar and every manifest row name the layer, its
grid and its layout. Consecutive models of the list are built as one stronger/weaker pair,
so each build covers two models.

``make test`` runs the smallest model of each family (:data:`FAMILIES`: 21 architectures,
the ones whose layer choice differs); ``CAMSTUDY_SWEEP=all`` runs every model of the
engine's sweep (73 models; about 5 minutes on 2 idle cores, docs/engine.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from camstudy.cli import main
from stimuli.demo_set import foolbox_folder
from tests.gradcam.test_torchvision_sweep import ALL, DEFAULT_GRID, GRIDS, INPUT_SIZE, SKIPPED

# The smallest model of each torchvision family: each family shares its layer choice
# (the same blocks, channels-last or token layout, head), so these cover every path.
FAMILIES = [
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "resnet18",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "squeezenet1_1",
    "swin_t",
    "swin_v2_t",
    "vgg11_bn",
    "vit_b_32",
]
EVERY = [n for n in ALL if n not in SKIPPED]
MODELS = EVERY if os.environ.get("CAMSTUDY_SWEEP") == "all" else [n for n in FAMILIES if n in EVERY]
PAIRS = [tuple(MODELS[i : i + 2]) for i in range(0, len(MODELS), 2)]
DOG = foolbox_folder() / "imagenet_16_251.jpg"
EAGLE = foolbox_folder() / "imagenet_17_22.jpg"


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


def _grid_ok(name: str, grid: str) -> None:
    """The recorded grid is the architecture's at the sweep's input size; a model whose
    registry preprocessing crops larger (EfficientNet-B1+, ...) gets a square grid at least
    as large."""
    h, w = (int(v) for v in grid.split("x"))
    expected = GRIDS.get(name, DEFAULT_GRID)
    transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms
    crop = transforms.keywords.get("crop_size", 224)  # what the registry preprocesses to
    if crop == INPUT_SIZE.get(name, 224):
        assert (h, w) == expected, (name, grid, crop)
    else:
        assert h == w and h >= expected[0], (name, grid, crop)


@pytest.mark.parametrize("name", MODELS)
def test_explain_cli_with_random_weights(name, tmp_path, capsys):
    rc = main(
        ["explain", str(DOG), "--model", name, "--weights", "random", "--method", "gradcam", "--out", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    sidecar = json.loads((tmp_path / f"imagenet_16_251.{name}.json").read_text())
    assert sidecar["weights_source"] == "random" and sidecar["layer"]
    assert sidecar["layer_layout"] in ("channels_first", "channels_last", "tokens")
    _grid_ok(name, sidecar["layer_grid"])
    assert (tmp_path / sidecar["files"]["gradcam"]).stat().st_size > 500


def _study(folder: Path, stronger: str, weaker: str) -> Path:
    dog = Image.open(DOG).convert("RGB").resize((112, 224))
    eagle = Image.open(EAGLE).convert("RGB").resize((112, 224))
    im = Image.new("RGB", (224, 224))
    im.paste(dog, (0, 0))
    im.paste(eagle, (112, 0))
    im.save(folder / "c0.png")
    (folder / "images.csv").write_text("path,labels,boxes\nc0.png,dog;bird,dog 0 0 112 224; bird 112 0 224 224\n")
    config = folder / "study.toml"
    config.write_text(f"""
seed = 1
out = "out"
methods = ["gradcam"]
display_size = 32
batch_size = 1
device = "cpu"
[models.stronger]
name = "{stronger}"
weights = "random"
[models.weaker]
name = "{weaker}"
weights = "random"
[source]
type = "csv"
path = "images.csv"
[categories]
dog = ["151-268"]
bird = ["7-24", "80-100", "127-146"]
[tasks.class_discrimination]
attention_checks = 0
""")
    return config


@pytest.mark.parametrize("pair", PAIRS, ids=["+".join(p) for p in PAIRS])
def test_stimuli_build_with_random_weights(pair, tmp_path, capsys):
    stronger, weaker = pair[0], pair[-1]  # an odd count ends with a model paired with itself
    config = _study(tmp_path, stronger, weaker)
    rc = main(["stimuli", "build", str(config)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    rows = json.loads((tmp_path / "out" / "manifest.json").read_text())["rows"]
    by_role = {r["model_role"]: r for r in rows if r["method"] == "gradcam"}
    assert set(by_role) == {"stronger", "weaker"}
    for role, name in (("stronger", stronger), ("weaker", weaker)):
        row = by_role[role]
        assert row["model"] == name and row["layer"]
        _grid_ok(name, row["layer_grid"])
        assert (tmp_path / "out" / row["file"]).stat().st_size > 100
