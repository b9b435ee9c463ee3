"""The engine on a CUDA device: same numbers as the CPU and captum, maps stay on the GPU.

Skipped where no CUDA device exists (this project's CI machines have none); run on a GPU
machine with ``pytest tests/gradcam/test_cuda.py``.
"""

import pytest
import torch
import torchvision
from captum.attr import GuidedBackprop, LayerGradCam

from gradcam import METHODS, explain
from tests.conftest import assert_same_snapshot, rel_err, snapshot

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture(autouse=True)
def _no_tf32():
    """Compare in true float32: cuDNN's default TF32 convolutions differ from the CPU at 1e-3."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def rel_l2(a, b):
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


@pytest.mark.parametrize("arch", ["vgg16", "alexnet", "resnet50", "mobilenet_v2"])
def test_cuda_matches_cpu_and_captum(arch):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    x = torch.randn(2, 3, 224, 192)
    t = [3, 17]
    cpu = explain(model, x, t, methods=METHODS)
    model_gpu = model.cuda()
    before = snapshot(model_gpu)
    gpu = explain(model_gpu, x.cuda(), t, methods=METHODS)
    assert_same_snapshot(before, snapshot(model_gpu))
    for m in ("cam", "gradcam", "counterfactual_cam", *METHODS):
        value = getattr(gpu, m)
        assert value.is_cuda, f"{m} left the device"
        # Across devices the summation order differs, and a rectifier mask can flip where a
        # value is within rounding of 0, so compare in norm; same-device parity with captum
        # below is exact to 1e-4 in max.
        assert rel_l2(value.cpu(), getattr(cpu, m)) <= 1e-3, m
    layer = dict(model_gpu.named_modules())[gpu.layer]
    ref_cam = LayerGradCam(model_gpu, layer).attribute(x.cuda(), target=t, relu_attributions=True)[:, 0]
    assert rel_err(gpu.cam, ref_cam) <= 1e-4
    if arch != "mobilenet_v2":  # captum hooks nn.ReLU only; MobileNetV2 uses ReLU6
        ref_gb = GuidedBackprop(model_gpu).attribute(x.cuda().requires_grad_(True), target=t)
        assert rel_err(gpu.guided_backprop, ref_gb) <= 1e-4


def test_cuda_offline_pair_on_composites():
    from stimuli.demo_set import composites
    from stimuli.models import OFFLINE_PAIR, load_model

    for name in OFFLINE_PAIR.values():
        model = load_model(name, device="cuda")
        for item in composites():
            x = model.preprocess(item.image)[None].cuda()
            ex = explain(model.module, x, torch.tensor([item.labels]).cuda(), layer=model.layer)
            width = ex.gradcam.shape[-1]
            for k, label in enumerate(item.labels):
                col = int(ex.gradcam[0, k].flatten().argmax()) % width
                assert (col < width // 2) == (item.boxes[label][0] == 0), (name, item.id, label)
