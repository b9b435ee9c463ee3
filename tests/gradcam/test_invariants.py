"""Mathematical invariants and the promise never to mutate the caller's model."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import GuidedBackprop
from torch import nn

from gradcam import METHODS, explain
from tests.conftest import GapNet, assert_same_snapshot, snapshot


def test_gradcam_equals_cam_over_area_on_gap_head(gap_net):
    x = torch.randn(3, 3, 16, 12)
    targets = [0, 3, 4]
    ex = explain(gap_net, x, targets, layer="features", methods="gradcam")
    a = gap_net.features(x)
    h, w = a.shape[-2:]
    cam = torch.einsum("nc,nchw->nhw", gap_net.fc.weight[targets], a).clamp(min=0)  # CAM, Zhou et al.
    torch.testing.assert_close(ex.cam, cam / (h * w), rtol=1e-5, atol=1e-7)


def test_counterfactual_support_is_disjoint(gap_net):
    ex = explain(gap_net, torch.randn(4, 3, 16, 16), 2, layer="features", methods=("gradcam", "counterfactual"))
    assert ((ex.cam > 0) & (ex.counterfactual_cam > 0)).sum() == 0
    assert (ex.cam > 0).any() and (ex.counterfactual_cam > 0).any()
    assert ex.counterfactual.shape == ex.gradcam.shape == (4, 16, 16)


@pytest.mark.parametrize("arch", ["alexnet", "resnet18"])
def test_k_class_call_equals_k_single_calls(arch):
    model = getattr(torchvision.models, arch)(weights=None).eval()
    x = torch.randn(2, 3, 96, 80)
    t = torch.tensor([[5, 9, 1], [7, 7, 300]])
    multi = explain(model, x, t, methods=METHODS)
    assert multi.cam.shape[:2] == (2, 3)
    assert multi.guided_backprop.shape == (2, 3, 3, 96, 80)
    for k in range(3):
        single = explain(model, x, t[:, k], methods=METHODS)
        for m in ("cam", "gradcam", "counterfactual_cam", *METHODS):
            torch.testing.assert_close(getattr(multi, m)[:, k], getattr(single, m), rtol=1e-5, atol=1e-6)


def test_k_axis_kept_for_one_column():
    ex = explain(GapNet().eval(), torch.randn(2, 3, 8, 8), torch.tensor([[1], [2]]), layer="features")
    assert ex.cam.shape[:2] == (2, 1) and ex.guided_gradcam.shape == (2, 1, 3, 8, 8)


def test_callable_target_is_differentiated(gap_net):
    x = torch.randn(2, 3, 8, 8)
    diff = explain(gap_net, x, lambda logits: logits[:, 1] - logits[:, 2], layer="features", methods="gradcam")
    one = explain(gap_net, x, 1, layer="features", methods="gradcam")
    assert diff.targets is None
    assert not torch.allclose(diff.cam, one.cam)
    # A logit difference on a linear head is Grad-CAM with the difference of the weights.
    a = gap_net.features(x)
    w = gap_net.fc.weight[1] - gap_net.fc.weight[2]
    expected = torch.einsum("c,nchw->nhw", w, a).clamp(min=0) / a[0, 0].numel()
    torch.testing.assert_close(diff.cam, expected, rtol=1e-5, atol=1e-7)


class Functional(nn.Module):
    """Rectifiers as functional calls and ReLU6 modules, nothing captum can hook."""

    def __init__(self, six: bool = False) -> None:
        super().__init__()
        self.six = six
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 6, 3), nn.Conv2d(6, 6, 3), nn.Conv2d(6, 6, 3)
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 4)
        self.act6 = nn.ReLU6(inplace=True)

    def forward(self, x):
        if self.six:
            x = self.act6(self.c1(x))
            x = F.relu6(self.c2(x))
            x = F.hardtanh(self.c3(x), 0.0, 6.0)
        else:
            x = F.relu(self.c1(x))
            x = torch.relu(self.c2(x))
            x = self.c3(x).relu_()
        x = F.relu(self.fc1(x.mean(dim=(2, 3))), inplace=True)
        return self.fc2(x)


class Modules(Functional):
    """The same network with nn.ReLU modules, which captum's GuidedBackprop hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.r1, self.r2, self.r3, self.r4 = nn.ReLU(), nn.ReLU(), nn.ReLU(inplace=True), nn.ReLU()

    def forward(self, x):
        x = self.r3(self.c3(self.r2(self.c2(self.r1(self.c1(x))))))
        return self.fc2(self.r4(self.fc1(x.mean(dim=(2, 3)))))


def test_functional_relus_follow_the_guided_rule():
    func = Functional().eval()
    mods = Modules().eval()
    mods.load_state_dict(func.state_dict(), strict=False)
    x = torch.randn(2, 3, 12, 12)
    ex = explain(func, x, [1, 3], layer="c3", methods="guided_backprop")
    ref = GuidedBackprop(mods).attribute(x.clone().requires_grad_(True), target=[1, 3])
    torch.testing.assert_close(ex.guided_backprop, ref, rtol=1e-5, atol=1e-7)


def _guided_relu6_reference(model, x, t):
    """Guided backprop for ReLU6, written out with ``torch.clamp`` and tensor hooks.

    A hook on a pre-activation ``z`` sees ``g * [0 < z < 6]``; clamping that at 0 gives
    the guided rule ``g * [0 < z < 6] * [g > 0]``.
    """
    x = x.clone().requires_grad_(True)

    def guided(z):
        z.register_hook(lambda g: g.clamp(min=0))
        return z

    h = torch.clamp(guided(model.c1(x)), 0, 6)
    h = torch.clamp(guided(model.c2(h)), 0, 6)
    h = torch.clamp(guided(model.c3(h)), 0, 6)
    out = model.fc2(torch.clamp(guided(model.fc1(h.mean(dim=(2, 3)))), min=0))
    (g,) = torch.autograd.grad(out.gather(1, torch.tensor(t)[:, None]).sum(), x)
    return g


def test_relu6_modules_and_functionals_follow_the_guided_rule():
    model = Functional(six=True).eval()
    x = torch.randn(2, 3, 12, 12) * 4
    ex = explain(model, x, [0, 2], layer="c3", methods="guided_backprop")
    torch.testing.assert_close(ex.guided_backprop, _guided_relu6_reference(model, x, [0, 2]), rtol=1e-5, atol=1e-7)


def _mixed_state_model():
    model = torchvision.models.resnet18(weights=None)
    model.train()
    model.layer2.eval()  # mixed flags must come back exactly, not via model.train()
    model.conv1.weight.requires_grad_(False)
    model.fc.register_forward_hook(lambda *a: None)
    return model


def test_model_state_unchanged_after_call():
    model = _mixed_state_model()
    before = snapshot(model)
    explain(model, torch.randn(2, 3, 64, 64), [1, 2], methods=METHODS)
    assert_same_snapshot(before, snapshot(model))


class Boom(RuntimeError):
    pass


def test_model_state_unchanged_after_exception_in_forward():
    model = _mixed_state_model()

    def explode(*_):
        raise Boom("raised inside the forward pass")

    handle = model.avgpool.register_forward_hook(explode)
    before = snapshot(model)
    with pytest.raises(Boom):
        explain(model, torch.randn(1, 3, 64, 64), 1, methods=METHODS)
    assert_same_snapshot(before, snapshot(model))
    handle.remove()
    # Nothing of ours is left behind: the default rules are back for plain autograd.
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    model.eval()
    assert torch.autograd.grad(model(x)[0, 1], x)[0].min() < 0


def test_model_state_unchanged_after_target_error():
    model = _mixed_state_model()
    before = snapshot(model)
    with pytest.raises(ValueError, match="out of range for 1000 classes"):
        explain(model, torch.randn(2, 3, 64, 64), [1, 1000])
    assert_same_snapshot(before, snapshot(model))


def test_caller_input_untouched_and_grad_mode_irrelevant(gap_net):
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ex = explain(gap_net, x, 1, layer="features")
    assert not x.requires_grad and x.grad is None
    with torch.inference_mode():
        xi = torch.randn(2, 3, 8, 8)
    ex2 = explain(gap_net, xi, 1, layer="features")
    assert ex.gradcam.shape == ex2.gradcam.shape == (2, 8, 8)


def test_float64_inputs(gap_net):
    ex = explain(gap_net.double(), torch.randn(2, 3, 8, 8, dtype=torch.float64), 0, layer="features")
    assert ex.guided_gradcam.dtype == torch.float64
