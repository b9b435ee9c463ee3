"""The offline pretrained pair on the bundled photos: real weights, real images."""

import pytest
import torch

from gradcam import explain
from stimuli.demo_set import EGYPTIAN_CAT, composites, foolbox_photos
from stimuli.models import OFFLINE_PAIR, load_model

MOBILENET_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


@pytest.fixture(scope="module", params=sorted(OFFLINE_PAIR.values()))
def model(request):
    return load_model(request.param)


def test_weights_are_recorded(model):
    assert len(model.weights_sha256) == 64
    if model.name == "mobilenet_v2":
        assert model.weights_sha256 == MOBILENET_SHA256
    assert len(model.class_names) == 1000


def test_gradcam_maximum_lies_on_the_half_of_its_class(model):
    """Cat|dog composites, cat on either side: each class's Grad-CAM peaks on its own half."""
    for item in composites():
        x = model.preprocess(item.image)[None]
        ex = explain(model.module, x, torch.tensor([item.labels]), layer=model.layer, methods="gradcam")
        width = ex.gradcam.shape[-1]
        for k, label in enumerate(item.labels):
            peak_col = int(ex.gradcam[0, k].flatten().argmax()) % width
            on_left = peak_col < width // 2
            expected_left = item.boxes[label][0] == 0
            kind = "cat" if label == EGYPTIAN_CAT else "dog"
            assert on_left == expected_left, f"{model.name}: {kind} map peaks on the wrong half of {item.id}"


def test_models_recognise_most_labelled_photos(model):
    photos = foolbox_photos()
    x = torch.stack([model.preprocess(p.image) for p in photos])
    with torch.no_grad():
        top1 = model.module(x).argmax(1).tolist()
    correct = sum(t == p.labels[0] for t, p in zip(top1, photos, strict=True))
    assert correct >= 17, f"{model.name} got {correct}/20: preprocessing or weights are wrong"
