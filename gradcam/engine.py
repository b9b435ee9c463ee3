"""The explanation engine: Grad-CAM and its relatives from one forward pass.

The math follows Selvaraju et al. (IJCV 2019):

* score ``S``: the pre-softmax logit of the target class (or any differentiable concept);
* Grad-CAM: ``alpha_k = mean_{i,j} dS/dA_k[i,j]`` and ``cam = ReLU(sum_k alpha_k A_k)``
  at the layer's resolution, then bilinearly upsampled to the input size;
* counterfactual Grad-CAM: the same with ``-dS/dA``;
* Guided Backprop / Deconvnet: ``dS/dx`` with the rectifier rules of
  :mod:`gradcam.rectifiers`;
* Guided Grad-CAM = Guided Backprop x Grad-CAM; Deconvnet Grad-CAM = Deconvnet x Grad-CAM.

Cost: one forward pass per call. Each class then needs one backward pass per distinct
rule: an ordinary one to the layer (only through the network's head) for the CAMs, and
a guided or deconv one to the input. When no rectifier runs between the layer and the
score (ResNet, MobileNetV2, EfficientNet), the rules agree on ``dS/dA`` and the CAM
gradient comes out of the guided pass for free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gradcam.layers import CHANNELS_FIRST, Layout, Reshape, read_layout, resolve_layer, restored
from gradcam.rectifiers import DECONV, GUIDED, ORDINARY, RectifierRules, RuleState
from gradcam.targets import Targets, as_index_tensor, scores_from

METHODS = (
    "gradcam",
    "guided_backprop",
    "guided_gradcam",
    "deconvnet",
    "deconv_gradcam",
    "counterfactual",
)
DEFAULT_METHODS = ("gradcam", "guided_backprop", "guided_gradcam")

_NEEDS_CAM = {"gradcam", "guided_gradcam", "deconv_gradcam", "counterfactual"}
_NEEDS_RULE = {
    "guided_backprop": GUIDED,
    "guided_gradcam": GUIDED,
    "deconvnet": DECONV,
    "deconv_gradcam": DECONV,
}


@dataclass(frozen=True)
class Explanation:
    """What :func:`explain` returns. Tensors are detached and on the input's device.

    Shapes are given for ``targets`` of one class per image; with an ``(N, K)`` target
    tensor (or a callable returning ``(N, K)`` scores) every map gains a ``K`` axis after
    ``N``. Fields of methods that were not requested are None, except the intermediates
    that a requested method is built from (``cam``/``gradcam`` for every CAM-based method,
    ``guided_backprop`` for Guided Grad-CAM, ``deconvnet`` for Deconvnet Grad-CAM).

    Attributes:
        logits: ``(N, C)`` the model's output.
        targets: ``(N,)`` or ``(N, K)`` class indices, None for a callable target.
        layer: dotted name of the module whose output ``A`` Grad-CAM used.
        methods: the methods computed.
        layer_grid: ``(h, w)``, the grid of ``A`` (and of ``cam``).
        layer_layout: how the layer's output was read as ``(N, C, h, w)``:
            ``"channels_first"``, ``"channels_last"`` (permuted), ``"tokens"`` (class
            tokens dropped, the rest laid out row by row) or ``"reshape"`` (the caller's
            ``reshape=``); see :mod:`gradcam.layers`.
        cam: ``(N, h, w)`` Grad-CAM at the layer's resolution, after ReLU, unnormalized.
        gradcam: ``(N, H, W)`` ``cam`` bilinearly upsampled to the input size.
        guided_backprop: ``(N, 3, H, W)``.
        guided_gradcam: ``(N, 3, H, W)`` ``guided_backprop * gradcam``.
        deconvnet: ``(N, 3, H, W)``.
        deconv_gradcam: ``(N, 3, H, W)`` ``deconvnet * gradcam``.
        counterfactual_cam: ``(N, h, w)`` Grad-CAM of the negated gradients.
        counterfactual: ``(N, H, W)`` ``counterfactual_cam`` upsampled.
    """

    logits: torch.Tensor
    targets: torch.Tensor | None
    layer: str
    methods: tuple[str, ...]
    layer_grid: tuple[int, int] | None = None
    layer_layout: str | None = None
    cam: torch.Tensor | None = None
    gradcam: torch.Tensor | None = None
    guided_backprop: torch.Tensor | None = None
    guided_gradcam: torch.Tensor | None = None
    deconvnet: torch.Tensor | None = None
    deconv_gradcam: torch.Tensor | None = None
    counterfactual_cam: torch.Tensor | None = None
    counterfactual: torch.Tensor | None = None


def explain(
    model: nn.Module,
    x: torch.Tensor,
    targets: Targets,
    layer: str | nn.Module | None = None,
    methods: str | Iterable[str] = DEFAULT_METHODS,
    reshape: Reshape | None = None,
) -> Explanation:
    """Explain ``model``'s scores for ``targets`` on the batch ``x``.

    Args:
        model: any PyTorch CNN. It runs in eval mode during the call; its training flags,
            hooks, parameters and ``requires_grad`` are as before afterwards, also when the
            call raises.
        x: ``(N, C, H, W)`` float input, already preprocessed for ``model``.
        targets: an int (the same class for every image); ``N`` class indices; an
            ``(N, K)`` tensor of ``K`` classes per image; or a callable mapping the logits
            ``(N, C)`` to differentiable scores ``(N,)`` or ``(N, K)``.
        layer: dotted module name, a submodule, or None for the paper's choice
            (:func:`gradcam.layers.default_layer`, traced on ``x``'s first image once per
            model and input shape). ``Explanation.layer`` names it. Its output may be
            ``(N, C, h, w)``, channels-last ``(N, h, w, C)`` or tokens
            ``(N, [cls +] h*w, C)`` with an unambiguous grid (:mod:`gradcam.layers`).
        methods: any of ``"gradcam", "guided_backprop", "guided_gradcam", "deconvnet",
            "deconv_gradcam", "counterfactual"``.
        reshape: with an explicit ``layer``, a callable turning the layer's output into
            ``(N, C, h, w)`` (pytorch-grad-cam's ``reshape_transform``). It is applied to
            the output and to its gradient, so it must only select and rearrange elements.

    Returns:
        An :class:`Explanation`.

    Raises:
        ValueError: unknown method or layer, a layer that did not run or whose output
            cannot be read as a map, a ``reshape`` that fails or returns the wrong shape,
            a target out of range, a target count that does not match the batch, an input
            of the wrong shape.
        TypeError: arguments of the wrong type.
    """
    wanted = _check_methods(methods)
    _check_input(x)
    if reshape is not None and layer is None:
        raise ValueError("reshape= needs an explicit layer= (the layer whose output it reshapes)")
    if reshape is not None and not callable(reshape):
        raise TypeError(f"reshape must be a callable, not {type(reshape).__name__}")
    name, module = resolve_layer(model, layer, x)
    index = as_index_tensor(targets, x.shape[0], x.device)
    rules = sorted({_NEEDS_RULE[m] for m in wanted if m in _NEEDS_RULE})
    need_cam = bool(_NEEDS_CAM & set(wanted))

    state = RuleState()
    with restored(model), torch.inference_mode(False), torch.enable_grad():
        model.eval()
        with _capture(module, name, state, x.shape[-2:], reshape) as act:
            xin = x.detach().clone() if x.is_inference() else x.detach()
            xin.requires_grad_(True)
            with RectifierRules(state) if rules else contextlib.nullcontext():
                logits = model(xin)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise TypeError("the model must return (N, C) logits as one tensor")
        if act.value is None:
            raise ValueError(f"layer {name!r} did not run in the forward pass")
        scores, multi = scores_from(targets, index, logits)
        grads = _backward_passes(scores, act, xin, rules, need_cam, state)

    return _assemble(wanted, logits, index, name, act, x.shape[-2:], grads, rules, multi)


def _backward_passes(scores, act, xin, rules, need_cam, state):
    """Run the backward passes; return ``{"cam": [...], rule: [...]}`` per class."""
    # Rules differ only at rectifiers: with none between the layer and the score, the
    # first rule pass also yields the ordinary dS/dA, and no separate CAM pass is needed.
    cam_in_rule_pass = need_cam and bool(rules) and state.calls == act.calls_before_head
    plan: list[tuple[str, tuple[torch.Tensor, ...]]] = []
    if need_cam and not cam_in_rule_pass:
        plan.append((ORDINARY, (act.value,)))
    for i, rule in enumerate(rules):
        plan.append((rule, (act.value, xin) if cam_in_rule_pass and i == 0 else (xin,)))

    out: dict[str, list[torch.Tensor]] = {"cam": [], **{r: [] for r in rules}}
    k_total = scores.shape[1]
    for k in range(k_total):
        s = scores[:, k].sum()  # images are independent in eval mode
        for i, (rule, inputs) in enumerate(plan):
            state.rule = rule
            last = k == k_total - 1 and i == len(plan) - 1
            g = torch.autograd.grad(s, inputs, retain_graph=not last, allow_unused=True)
            for t, gt in zip(inputs, g, strict=True):
                if gt is None:
                    gt = torch.zeros_like(t)
                out["cam" if t is act.value else rule].append(gt)
    state.rule = ORDINARY
    return out


def _assemble(wanted, logits, index, name, act, size, grads, rules, multi) -> Explanation:
    """Turn per-class gradients into the maps; ``multi`` keeps a K axis after N."""
    fields: dict[str, torch.Tensor] = {}
    stack = (lambda ts: torch.stack(ts, 1)) if multi else (lambda ts: ts[0])
    layout: Layout = act.layout
    to_map = layout.to_map
    a = to_map(act.value.detach())  # (N, C, h, w); the gradients are read the same way
    if grads["cam"]:
        w = stack([to_map(g).mean(dim=(-2, -1)) for g in grads["cam"]])  # (N, [K,] C)
        lin = torch.einsum("nkc,nchw->nkhw" if multi else "nc,nchw->nhw", w, a)
        cam = lin.clamp(min=0)
        fields["cam"] = cam
        fields["gradcam"] = _upsample(cam, size)
        if "counterfactual" in wanted:
            fields["counterfactual_cam"] = (-lin).clamp(min=0)
            fields["counterfactual"] = _upsample(fields["counterfactual_cam"], size)
    for rule, method, combined in ((GUIDED, "guided_backprop", "guided_gradcam"), (DECONV, "deconvnet", "deconv_gradcam")):
        if rule not in rules:
            continue
        img = stack(grads[rule])
        fields[method] = img  # computed anyway; display of the combined map needs it
        if combined in wanted:
            fields[combined] = img * fields["gradcam"].unsqueeze(-3)
    return Explanation(
        logits=logits.detach(), targets=index, layer=name, methods=tuple(wanted),
        layer_grid=tuple(int(v) for v in a.shape[-2:]), layer_layout=layout.kind, **fields
    )


def _upsample(m: torch.Tensor, size) -> torch.Tensor:
    lead = m.shape[:-2]
    flat = m.reshape(-1, 1, *m.shape[-2:])
    up = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return up.reshape(*lead, *up.shape[-2:])


class _Activation:
    __slots__ = ("value", "calls_before_head", "layout")

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None
        self.calls_before_head = 0
        self.layout = Layout(CHANNELS_FIRST, (0, 0))


@contextlib.contextmanager
def _capture(module: nn.Module, name: str, state: RuleState, size, reshape) -> Iterator[_Activation]:
    """Keep the output of ``module``'s last call and how to read it; the hook is
    removed on exit."""
    act = _Activation()
    H, W = int(size[0]), int(size[1])

    def hook(_mod, _inp, out):
        act.layout = read_layout(out, H, W, reshape, name)
        act.value = out
        act.calls_before_head = state.calls
        # Hand a copy downstream so a later in-place op cannot change the saved A.
        return out.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield act
    finally:
        handle.remove()


def _check_methods(methods: str | Iterable[str]) -> list[str]:
    if isinstance(methods, str):
        methods = (methods,)
    try:
        wanted = list(dict.fromkeys(methods))
    except TypeError:
        raise TypeError("methods must be a method name or an iterable of names") from None
    if not wanted:
        raise ValueError("no method requested")
    for m in wanted:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    return wanted


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, not {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, not {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch")
