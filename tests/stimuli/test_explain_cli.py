"""``camstudy explain``: files, sidecars, and one clear line with exit 2 on bad input."""

import json
import subprocess
import sys

import pytest

from camstudy.cli import main
from stimuli.demo_set import foolbox_folder

DOG = str(foolbox_folder() / "imagenet_16_251.jpg")  # a dalmatian
EAGLE = str(foolbox_folder() / "imagenet_17_22.jpg")


def test_explain_writes_pngs_and_sidecars(tmp_path, capsys):
    rc = main(["explain", DOG, EAGLE, "--model", "mobilenet_v2", "--out", str(tmp_path)])
    assert rc == 0
    sidecar = json.loads((tmp_path / "imagenet_16_251.mobilenet_v2.json").read_text())
    assert sidecar["model"] == "mobilenet_v2"
    assert sidecar["layer"] == "features"
    assert sidecar["target"] == {"index": 251, "name": "dalmatian", "rule": "top1"}
    assert sidecar["top5"][0]["name"] == "dalmatian" and 0 < sidecar["top5"][0]["probability"] <= 1
    assert len(sidecar["weights_sha256"]) == 64
    for method in ("gradcam", "guided_backprop", "guided_gradcam"):
        assert (tmp_path / sidecar["files"][method]).stat().st_size > 1000
    eagle = json.loads((tmp_path / "imagenet_17_22.mobilenet_v2.json").read_text())
    assert eagle["target"]["name"] == "bald eagle"


def test_explain_target_by_name_and_method_list(tmp_path):
    rc = main(
        [
            "explain",
            DOG,
            "--model",
            "mobilenet_v2",
            "--target",
            "Great Dane",
            "--method",
            "gradcam,counterfactual",
            "--method",
            "deconvnet",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    sidecar = json.loads((tmp_path / "imagenet_16_251.mobilenet_v2.json").read_text())
    assert sidecar["target"]["index"] == 246 and sidecar["target"]["rule"] == "given"
    assert set(sidecar["files"]) == {"gradcam", "counterfactual", "deconvnet"}


def _garbage(tmp_path):
    p = tmp_path / "broken.jpg"
    p.write_bytes(b"not an image at all")
    return str(p)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "vgg61"], "unknown model 'vgg61'"),
        (["--model", "mobilenet_v2", "--layer", "features.99"], "unknown layer 'features.99'"),
        (["--model", "mobilenet_v2", "--method", "gradcan"], "unknown method 'gradcan'"),
        (["--model", "mobilenet_v2", "--target", "1000"], "target 1000 is out of range for 1000 classes"),
        (
            ["--model", "mobilenet_v2", "--target", "dalmatain"],
            "unknown class name 'dalmatain' .did you mean 'dalmatian'",
        ),
        (["--model", "mobilenet_v2", "--weights", "/nonexistent.pth"], "weights file not found"),
        (["--model", "mobilenet_v2", "--device", "cuda:99"], "cuda"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(tmp_path, capsys, extra, message):
    rc = main(["explain", DOG, "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("camstudy explain: error: ")
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize("which", ["missing", "garbage"])
def test_unreadable_images(tmp_path, capsys, which):
    image = str(tmp_path / "nope.jpg") if which == "missing" else _garbage(tmp_path)
    rc = main(["explain", DOG, image, "--model", "mobilenet_v2", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert ("image not found" if which == "missing" else "cannot read image") in err
    assert not (tmp_path / "out").exists()  # every image is checked before any work


def test_weights_that_do_not_fit(tmp_path, capsys):
    import torch

    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, bad)
    rc = main(["explain", DOG, "--model", "mobilenet_v2", "--weights", str(bad), "--out", str(tmp_path)])
    assert rc == 2 and "does not fit MobileNetV2" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    """The installed entry point, as a user runs it: no traceback, exit 2."""
    r = subprocess.run(
        [sys.executable, "-m", "camstudy.cli", "explain", DOG, "--model", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
