"""The model registry: names, weights, preprocessing metadata."""

import pytest
import torch

from camstudy.errors import UserError
from stimuli.models import load_model


def test_random_weights_of_a_batchnorm_model_are_hashed():
    """BatchNorm's 0-dim ``num_batches_tracked`` buffers crashed the hash (issue 14)."""
    m = load_model("resnet18", weights="random")
    assert len(m.weights_sha256) == 64 and m.weights_source == "random"
    from stimuli.models import state_dict_sha256

    assert state_dict_sha256(m.module) == m.weights_sha256


def test_torchvision_random_weights_entry():
    m = load_model("alexnet", weights="random")
    assert m.layer == "features.11" and len(m.weights_sha256) == 64 and m.weights_source == "random"
    assert m.input_size == 224 and len(m.class_names) == 1000


def test_local_checkpoint_is_hashed(tmp_path):
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    m = load_model("resnet18", weights=str(path))
    assert m.layer == "layer4" and len(m.weights_sha256) == 64 and m.weights_source == str(path)


def test_missing_torchvision_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"put vgg16-397923af\.pth in .*checkpoints, or pass --weights PATH"):
        load_model("vgg16")


def test_degraded_mobilenet_is_labelled():
    m = load_model("mobilenet_v2@112")
    assert m.input_size == 112 and "DEGRADED" in m.description


def test_factory_entry():
    m = load_model("tests.conftest:GapNet")
    assert m.layer == "features.3" and len(m.weights_sha256) == 64 and m.weights_source == "factory"


@pytest.mark.parametrize(
    "name, message",
    [
        ("efficientnet_lite9", "unknown model"),
        ("nosuchpkg.mod:make", "cannot import model factory"),
        ("mobilenet_v2@big", "mobilenet_v2@SIZE"),
    ],
)
def test_bad_names(name, message):
    with pytest.raises(UserError, match=message):
        load_model(name)
