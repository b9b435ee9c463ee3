"""Every method of the engine, and captum methods, in ``camstudy explain``, ``stimuli build``
and ``stimuli evaluate``, on the tiny colour models (tests/stimuli/tiny_models.py).

One build and one evaluation with all methods serve the per-method checks (a build per
method would cost about 3 s each); ``camstudy explain`` runs once per method on one 32 px
photo. Also: the plain-gradient warning (a SiLU model, ``guided_rectifiers == 0``) and
bad method names (one line, exit 2, no traceback).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from camstudy.cli import main
from gradcam import ALL_METHODS, CAM_METHODS, GUIDED_METHODS
from gradcam.render import is_overlaid
from stimuli.manifest import read_manifest
from tests.stimuli.conftest import make_study

CAPTUM = ("captum:IntegratedGradients", "captum:Occlusion")
EVERY = (*ALL_METHODS, *CAPTUM)
STRONG = "tests.stimuli.tiny_models:strong"
SMOOTH = "tests.stimuli.tiny_models:smooth"


def test_every_method_has_a_display_rule():
    for m in EVERY:
        assert is_overlaid(m) == (m in CAM_METHODS or m.startswith("captum:")), m
        assert is_overlaid(m) != (m in GUIDED_METHODS), m


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    p = tmp_path_factory.mktemp("photo") / "red.png"
    im = Image.new("RGB", (48, 48), (20, 20, 20))
    im.paste((230, 30, 30), (8, 8, 40, 40))
    im.save(p)
    return p


@pytest.mark.parametrize("method", EVERY)
def test_camstudy_explain_every_method(photo, tmp_path, capsys, method):
    rc = main(["explain", str(photo), "--model", STRONG, "--method", method, "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 0 and captured.err == ""
    sidecar = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert sidecar["methods"] == [method] and set(sidecar["files"]) == {method}
    name = sidecar["files"][method]
    assert ":" not in name
    with Image.open(tmp_path / name) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
        colours = len(np.unique(np.asarray(im).reshape(-1, 3), axis=0))
    if method != "counterfactual":  # no evidence against "cat" in a red photo: a flat map
        assert colours > 4, method  # not blank
    assert sidecar["target"]["name"] == "cat"
    assert sidecar["guided_rectifiers"] == (1 if method in GUIDED_METHODS else None)


@pytest.fixture(scope="module")
def built_all(tmp_path_factory):
    """One build and one evaluation of the tiny study with every method."""
    root = tmp_path_factory.mktemp("all")
    config = make_study(root, methods=list(EVERY))
    assert main(["stimuli", "build", str(config), "--quiet"]) == 0
    out = root / "eval.csv"
    assert main(["stimuli", "evaluate", str(config), "--patch", "8", "--stride", "8", "--out", str(out)]) == 0
    return root / "out", list(csv.DictReader(out.open()))


@pytest.mark.parametrize("method", EVERY)
def test_stimuli_build_and_evaluate_every_method(built_all, method):
    out, rows = built_all
    manifest = read_manifest(out)
    mine = [r for r in manifest["rows"] if r["method"] == method]
    assert {r["model_role"] for r in mine} == {"stronger", "weaker"}
    for r in mine:
        assert ":" not in r["file"]
        with Image.open(out / r["file"]) as im:
            assert im.size == (40, 40)
        with Image.open(out / r["file_2x"]) as im:
            assert im.size == (80, 80)
    build = json.loads((out / "build.json").read_text())
    assert build["plain_gradient"] == []
    if method in GUIDED_METHODS:
        assert build["guided_rectifiers"] == {"stronger": 1, "weaker": 1}
    metrics = {(r["model_role"], r["metric"]) for r in rows if r["method"] == method}
    for role in ("stronger", "weaker"):
        for metric in ("faithfulness_spearman", "pointing_game", "box_localization"):
            assert (role, metric) in metrics, (method, role, metric)
    if method != "counterfactual":  # the map of the other class: it points away on purpose
        hits = [float(r["mean"]) for r in rows if r["method"] == method and r["metric"] == "pointing_game"]
        assert min(hits) >= 0.75, (method, hits)


def test_build_warns_once_per_model_without_rectifiers(tmp_path, capsys):
    config = make_study(tmp_path, weaker="smooth", methods=["guided_backprop", "deconv_gradcam", "gradcam"])
    assert main(["stimuli", "build", str(config), "--quiet"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "plain input gradient" in line]
    assert err == [
        f"warning: guided_backprop, deconv_gradcam of the weaker model ({SMOOTH}) show the plain input gradient, "
        "not a guided or deconv one: no rectifier (ReLU, ReLU6) lies between its input and score "
        "(guided_rectifiers = 0), as in GELU, SiLU or Hardswish networks"
    ]
    build = json.loads((tmp_path / "out" / "build.json").read_text())
    assert build["guided_rectifiers"] == {"stronger": 1, "weaker": 0}
    assert [(p["model_role"], p["methods"]) for p in build["plain_gradient"]] == [
        ("weaker", ["guided_backprop", "deconv_gradcam"])
    ]


def test_build_without_guided_methods_does_not_warn(tmp_path, capsys):
    config = make_study(tmp_path, weaker="smooth", methods=["gradcam", "layercam"])
    assert main(["stimuli", "build", str(config), "--quiet"]) == 0
    assert "plain input gradient" not in capsys.readouterr().err


def test_explain_warns_once_without_rectifiers(photo, tmp_path, capsys):
    rc = main(
        [
            "explain",
            str(photo),
            str(photo),
            "--batch-size",
            "1",
            "--model",
            SMOOTH,
            "--method",
            "guided_backprop,gradcam",
            "--out",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and err == (
        f"camstudy explain: warning: {SMOOTH} has no rectifier (ReLU, ReLU6) between input and score, "
        "so guided_backprop shows the plain input gradient, not a guided or deconv one\n"
    )
    assert main(["explain", str(photo), "--model", SMOOTH, "--method", "gradcam", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""


BAD = [
    ("score_cam", "unknown method 'score_cam'; choose from gradcam, "),
    ("captum:NoSuchMethod", "unknown captum method 'captum:NoSuchMethod'; captum.attr offers "),
    ("captum:LayerGradCam", "does not attribute to the input"),
]


@pytest.mark.parametrize("method, message", BAD)
def test_bad_method_in_config_is_one_line_exit_2(tmp_path, capsys, method, message):
    config = make_study(tmp_path, methods=["gradcam", method])
    for cmd in ("build", "evaluate"):
        rc = main(["stimuli", cmd, str(config), "--quiet"] if cmd == "build" else ["stimuli", cmd, str(config)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and message in err, (cmd, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method, message", BAD)
def test_bad_method_in_cli_is_one_line_exit_2(photo, tmp_path, capsys, method, message):
    rc = main(["explain", str(photo), "--model", STRONG, "--method", f"gradcam,{method}", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("camstudy explain: error: ") and message in err
    assert not (tmp_path / "o").exists()


def test_bad_method_console_script_has_no_traceback(tmp_path):
    """The entry point as a user runs it (``camstudy explain``'s: test_explain_cli.py)."""
    config = make_study(tmp_path, methods=["gradcam", "captum:NoSuchMethod"])
    r = subprocess.run(
        [sys.executable, "-m", "camstudy.cli", "stimuli", "build", str(config), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
