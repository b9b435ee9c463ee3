"""The explanation engine: Grad-CAM and its relatives from one forward pass.

The math follows Selvaraju et al. (IJCV 2019):

* score ``S``: the pre-softmax logit of the target class (or any differentiable concept);
* Grad-CAM: ``alpha_k = mean_{i,j} dS/dA_k[i,j]`` and ``cam = ReLU(sum_k alpha_k A_k)``
  at the layer's resolution, then bilinearly upsampled to the input size;
* counterfactual Grad-CAM: the same with ``-dS/dA``;
* Guided Backprop / Deconvnet: ``dS/dx`` with the rectifier rules of
  :mod:`gradcam.rectifiers`;
* Guided Grad-CAM = Guided Backprop x Grad-CAM; Deconvnet Grad-CAM = Deconvnet x Grad-CAM;
* the CAM family (:mod:`gradcam.cams`): Grad-CAM++, XGrad-CAM, HiResCAM and LayerCAM from
  the same ``A`` and ``dS/dA`` as Grad-CAM, Eigen-CAM from ``A`` alone, Score-CAM from ``A``
  and forward passes of the input masked by each upsampled channel of ``A``;
* ``"captum:<Class>"``: any captum input attribution (:mod:`gradcam.captum_adapter`).

Cost: one forward pass per call. Each class then needs one backward pass per distinct
rule: an ordinary one to the layer (only through the network's head) for the gradient
CAMs, and a guided or deconv one to the input. When no rectifier runs between the layer and
the score (ResNet, MobileNetV2, EfficientNet), the rules agree on ``dS/dA`` and the CAM
gradient comes out of the guided pass for free. Eigen-CAM needs no backward pass;
Score-CAM adds ``N * C`` masked forward passes (in batches, no gradient), captum methods
their own passes.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gradcam import cams
from gradcam.captum_adapter import PREFIX as CAPTUM_PREFIX
from gradcam.captum_adapter import attribution_class, is_captum
from gradcam.layers import CHANNELS_FIRST, Layout, Reshape, read_layout, resolve_layer, restored
from gradcam.rectifiers import DECONV, GUIDED, ORDINARY, RectifierRules, RuleState
from gradcam.targets import Targets, as_index_tensor, scores_from

# The methods computed from the call's one forward pass (and its backward passes).
METHODS = (
    "gradcam",
    "guided_backprop",
    "guided_gradcam",
    "deconvnet",
    "deconv_gradcam",
    "counterfactual",
    "gradcam_pp",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigencam",
)
# Methods that also run the model on perturbed copies of the input: Score-CAM (N * C
# masked forward passes) here, and every "captum:<Class>" method.
PERTURBATION_METHODS = ("scorecam",)
ALL_METHODS = METHODS + PERTURBATION_METHODS
DEFAULT_METHODS = ("gradcam", "guided_backprop", "guided_gradcam")
# Methods whose result is an (N, H, W) map with a layer-resolution map beside it (drawn
# over the photo), and those whose result is an (N, 3, H, W) gradient image.
CAM_METHODS = ("gradcam", "counterfactual", "gradcam_pp", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam")
GUIDED_METHODS = ("guided_backprop", "guided_gradcam", "deconvnet", "deconv_gradcam")
SCORECAM_BATCH = 32

_NEEDS_GRAD = {"gradcam", "guided_gradcam", "deconv_gradcam", *cams.GRADIENT_CAMS}
_NEEDS_RULE = {
    "guided_backprop": GUIDED,
    "guided_gradcam": GUIDED,
    "deconvnet": DECONV,
    "deconv_gradcam": DECONV,
}


class PlainGradientWarning(UserWarning):
    """A guided or deconv method ran on a network with no rectifier between input and
    score, so its image is the plain input gradient (see ``Explanation.guided_rectifiers``)."""


def layer_field(method: str) -> str:
    """The :class:`Explanation` field of a CAM method's layer-resolution map."""
    return {"gradcam": "cam", "counterfactual": "counterfactual_cam"}.get(method, f"{method}_cam")


@dataclass(frozen=True)
class Explanation:
    """What :func:`explain` returns. Tensors are detached and on the input's device.

    Shapes are given for ``targets`` of one class per image; with an ``(N, K)`` target
    tensor (or a callable returning ``(N, K)`` scores) every map gains a ``K`` axis after
    ``N``. Fields of methods that were not requested are None, except the intermediates
    that a requested method is built from (``cam``/``gradcam`` for every method that
    needs ``dS/dA``, ``guided_backprop`` for Guided Grad-CAM, ``deconvnet`` for Deconvnet
    Grad-CAM). Every layer-resolution map is after its ReLU and unnormalized; every
    ``(N, H, W)`` map is its layer map bilinearly upsampled (``align_corners=False``).

    Attributes:
        logits: ``(N, C)`` the model's output; None when it is not one ``(N, C)`` tensor
            (a callable target read it).
        targets: ``(N,)`` or ``(N, K)`` class indices, None for a callable target.
        layer: dotted name of the module whose output ``A`` the CAMs used.
        methods: the methods computed.
        layer_grid: ``(h, w)``, the grid of ``A`` (and of every layer map).
        layer_layout: how the layer's output was read as ``(N, C, h, w)``:
            ``"channels_first"``, ``"channels_last"`` (permuted), ``"tokens"`` (class
            tokens dropped, the rest laid out row by row) or ``"reshape"`` (the caller's
            ``reshape=``); see :mod:`gradcam.layers`.
        guided_rectifiers: with a guided or deconv method, the number of rectifier
            applications (calls of ``nn.ReLU``, ``nn.ReLU6``, ``F.relu``, ... in the
            forward pass, see :mod:`gradcam.rectifiers`) that lie on a path from the input
            to the score: exactly the rectifier nodes whose backward the guided (deconv)
            rule ran in, counted in the first class's rule pass. A module called twice
            counts twice. 0 means the rule changed nothing: the guided and deconv images
            are the plain input gradient (GELU, SiLU and Hardswish networks; a
            :class:`PlainGradientWarning` says so). None when no such method was requested.
        cam: ``(N, h, w)`` Grad-CAM at the layer's resolution.
        gradcam: ``(N, H, W)`` ``cam`` upsampled to the input size.
        guided_backprop: ``(N, 3, H, W)``.
        guided_gradcam: ``(N, 3, H, W)`` ``guided_backprop * gradcam``.
        deconvnet: ``(N, 3, H, W)``.
        deconv_gradcam: ``(N, 3, H, W)`` ``deconvnet * gradcam``.
        counterfactual_cam: ``(N, h, w)`` Grad-CAM of the negated gradients.
        counterfactual: ``(N, H, W)`` ``counterfactual_cam`` upsampled.
        gradcam_pp_cam, xgradcam_cam, hirescam_cam, layercam_cam, eigencam_cam,
        scorecam_cam: ``(N, h, w)`` Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM,
            Eigen-CAM (class-agnostic: the same map for every target) and Score-CAM at
            the layer's resolution (:mod:`gradcam.cams`).
        gradcam_pp, xgradcam, hirescam, layercam, eigencam, scorecam: ``(N, H, W)`` the
            same upsampled.
        attributions: ``{"captum:<Class>": (N, 3, H, W)}`` for the captum methods
            requested, else None.
    """

    logits: torch.Tensor | None
    targets: torch.Tensor | None
    layer: str
    methods: tuple[str, ...]
    layer_grid: tuple[int, int] | None = None
    layer_layout: str | None = None
    guided_rectifiers: int | None = None
    cam: torch.Tensor | None = None
    gradcam: torch.Tensor | None = None
    guided_backprop: torch.Tensor | None = None
    guided_gradcam: torch.Tensor | None = None
    deconvnet: torch.Tensor | None = None
    deconv_gradcam: torch.Tensor | None = None
    counterfactual_cam: torch.Tensor | None = None
    counterfactual: torch.Tensor | None = None
    gradcam_pp_cam: torch.Tensor | None = None
    gradcam_pp: torch.Tensor | None = None
    xgradcam_cam: torch.Tensor | None = None
    xgradcam: torch.Tensor | None = None
    hirescam_cam: torch.Tensor | None = None
    hirescam: torch.Tensor | None = None
    layercam_cam: torch.Tensor | None = None
    layercam: torch.Tensor | None = None
    eigencam_cam: torch.Tensor | None = None
    eigencam: torch.Tensor | None = None
    scorecam_cam: torch.Tensor | None = None
    scorecam: torch.Tensor | None = None
    attributions: Mapping[str, torch.Tensor] | None = None

    def get(self, method: str) -> torch.Tensor:
        """The result of ``method``: ``(N, [K,] H, W)`` for a CAM, ``(N, [K,] 3, H, W)`` for
        a guided method or a captum attribution.

        Raises:
            ValueError: the explanation holds no result of ``method``.
        """
        if is_captum(method):
            value = (self.attributions or {}).get(method)
        else:
            value = getattr(self, method, None) if method in ALL_METHODS else None
        if value is None:
            raise ValueError(f"the explanation holds no {method!r} result; it holds {', '.join(self.methods)}")
        return value

    def layer_map(self, method: str) -> torch.Tensor:
        """A CAM method's ``(N, [K,] h, w)`` map at the layer's resolution."""
        value = getattr(self, layer_field(method), None) if method in CAM_METHODS else None
        if value is None:
            raise ValueError(f"the explanation holds no layer map of {method!r}")
        return value


def explain(
    model: nn.Module,
    x: torch.Tensor | tuple,
    targets: Targets,
    layer: str | nn.Module | None = None,
    methods: str | Iterable[str] = DEFAULT_METHODS,
    reshape: Reshape | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    input_index: int = 0,
) -> Explanation:
    """Explain ``model``'s scores for ``targets`` on the batch ``x``.

    Args:
        model: any PyTorch CNN. It runs in eval mode during the call; its training flags,
            hooks, parameters and ``requires_grad`` are as before afterwards, also when the
            call raises.
        x: ``(N, C, H, W)`` float input, already preprocessed for ``model``; or a tuple
            of the model's positional inputs (``model(*x)``), of which ``x[input_index]``,
            an ``(N, C, H, W)`` float tensor, is explained (its gradients are the guided
            images, its size the maps' size); the others are passed as they are
            (tensors detached). A tuple needs an explicit ``layer`` and allows only the
            one-pass :data:`METHODS`.
        targets: an int (the same class for every image); ``N`` class indices; an
            ``(N, K)`` tensor of ``K`` classes per image; or a callable mapping the logits
            ``(N, C)`` to differentiable scores ``(N,)`` or ``(N, K)``. A callable receives
            the model's output as it is: a model may return any tensor shape (a
            segmentation's ``(N, C, H, W)``), a tuple or a dict, when the callable makes
            ``(N,)`` or ``(N, K)`` scores of it (then ``Explanation.logits`` is None, and
            only the one-pass :data:`METHODS` are allowed). Score-CAM and the
            captum methods run the model again on perturbed copies of ``x`` and call a
            callable target on those logits too, ``N`` rows at a time (row ``n`` a copy of
            image ``n``), after its call on the logits of ``x`` itself: a callable that
            picks its class from the logits (top-1) should fix it at its first call.
        layer: dotted module name, a submodule, or None for the paper's choice
            (:func:`gradcam.layers.default_layer`, traced on ``x``'s first image once per
            model and input shape). ``Explanation.layer`` names it. Its output may be
            ``(N, C, h, w)``, channels-last ``(N, h, w, C)`` or tokens
            ``(N, [cls +] h*w, C)`` with an unambiguous grid (:mod:`gradcam.layers`).
        methods: any of :data:`ALL_METHODS`: the one-pass :data:`METHODS`
            (``"gradcam", "guided_backprop", "guided_gradcam", "deconvnet",
            "deconv_gradcam", "counterfactual", "gradcam_pp", "xgradcam", "hirescam",
            "layercam", "eigencam"``) and ``"scorecam"``; and ``"captum:<Class>"`` for any
            captum input attribution (:mod:`gradcam.captum_adapter`; captum is imported
            only then).
        reshape: with an explicit ``layer``, a callable turning the layer's output into
            ``(N, C, h, w)`` (pytorch-grad-cam's ``reshape_transform``). It is applied to
            the output and to its gradient, so it must only select and rearrange elements.
        input_index: with a tuple ``x``, the position of the explained input.
        method_options: per requested method, options: ``{"scorecam": {"batch_size": B}}``
            (masked inputs per forward pass, default 32, rounded to a multiple of ``N``:
            ``max(1, B // N)`` channels of all ``N`` images), and for a captum method the
            keyword arguments of its ``attribute`` (replacing the adapter's defaults).

    Returns:
        An :class:`Explanation`.

    Warns:
        PlainGradientWarning: a guided or deconv method was requested and no rectifier
            lies between the input and the score (``guided_rectifiers == 0``).

    Raises:
        ValueError: unknown method or layer, a layer that did not run or whose output
            cannot be read as a map, a ``reshape`` that fails or returns the wrong shape,
            a target out of range, a target count that does not match the batch, an input
            of the wrong shape, bad ``method_options``; a captum method without captum
            installed (:class:`gradcam.captum_adapter.CaptumMissing`, also an ImportError).
        TypeError: arguments of the wrong type.
    """
    wanted = _check_methods(methods)
    options = _check_options(method_options, wanted)
    inputs, x = _split_inputs(x, input_index)
    _check_input(x)
    if inputs is not None:
        if layer is None:
            raise ValueError("a tuple of inputs needs an explicit layer= (the default layer is traced on one input)")
        _one_pass_only(wanted, "a tuple of inputs")
    if reshape is not None and layer is None:
        raise ValueError("reshape= needs an explicit layer= (the layer whose output it reshapes)")
    if reshape is not None and not callable(reshape):
        raise TypeError(f"reshape must be a callable, not {type(reshape).__name__}")
    for m in wanted:
        if is_captum(m):
            attribution_class(m)  # fails before any work when captum or the class is missing
    name, module = resolve_layer(model, layer, x)
    index = as_index_tensor(targets, x.shape[0], x.device)
    rules = sorted({_NEEDS_RULE[m] for m in wanted if m in _NEEDS_RULE})
    need_grad = bool(_NEEDS_GRAD & set(wanted))
    backward = need_grad or bool(rules)

    state = RuleState()
    with restored(model), torch.inference_mode(False), torch.enable_grad():
        model.eval()
        with _capture(module, name, state, x.shape[-2:], reshape) as act:
            xin = x.detach().clone() if x.is_inference() else x.detach()
            xin.requires_grad_(backward)
            with (
                RectifierRules(state) if rules else contextlib.nullcontext(),
                contextlib.nullcontext() if backward else torch.no_grad(),
            ):
                logits = model(xin) if inputs is None else model(*_with_input(inputs, input_index, xin))
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            if index is not None:
                raise TypeError(
                    "class indices need the model to return (N, C) logits as one tensor; for "
                    "another output pass a callable target (output -> (N,) or (N, K) scores)"
                )
            _one_pass_only(wanted, "a model output other than (N, C) logits")
        if act.value is None:
            raise ValueError(f"layer {name!r} did not run in the forward pass")
        scores, multi = scores_from(targets, index, logits, need_grad=backward, n=x.shape[0])
        k_total = scores.shape[1]
        grads = _backward_passes(scores, act, xin, rules, need_grad, state) if backward else {"cam": []}
        del scores
        extra: dict[str, Any] = {}
        if "scorecam" in wanted:
            extra["scorecam"] = _score_weights(
                model,
                xin.detach(),
                act,
                targets,
                index,
                k_total,
                options.get("scorecam", {}).get("batch_size", SCORECAM_BATCH),
            )
        captum = {
            m: _captum(m, model, module, x, index, targets, k_total, multi, options.get(m))
            for m in wanted
            if is_captum(m)
        }

    ex = _assemble(wanted, logits, index, name, act, x.shape[-2:], grads, rules, multi, k_total, extra, captum)
    if ex.guided_rectifiers == 0:
        _warn_plain_gradient(model, [m for m in wanted if m in _NEEDS_RULE])
    return ex


def _split_inputs(x, input_index: int):
    """``(inputs, explained)``: the tuple of the model's inputs (None for a lone tensor)
    and the explained tensor."""
    if isinstance(x, torch.Tensor) or not isinstance(x, (tuple, list)):
        return None, x
    if isinstance(input_index, bool) or not isinstance(input_index, int):
        raise TypeError(f"input_index must be an int, not {type(input_index).__name__}")
    if not -len(x) <= input_index < len(x):
        raise ValueError(f"input_index {input_index} is out of range for {len(x)} inputs")
    inputs = tuple(t.detach() if isinstance(t, torch.Tensor) else t for t in x)
    return inputs, inputs[input_index]


def _with_input(inputs: tuple, input_index: int, xin: torch.Tensor) -> tuple:
    out = list(inputs)
    out[input_index] = xin
    return tuple(out)


def _one_pass_only(wanted: list[str], why: str) -> None:
    bad = [m for m in wanted if m not in METHODS]
    if bad:
        raise ValueError(
            f"{', '.join(bad)} cannot be computed with {why}: they run the model on perturbed "
            f"copies of one input tensor and read (N, C) logits; choose from {', '.join(METHODS)}"
        )


def _warn_plain_gradient(model: nn.Module, plain: list[str]) -> None:
    times = " (times Grad-CAM)" if any(m.endswith("_gradcam") for m in plain) else ""
    warnings.warn(
        f"{type(model).__name__} has no rectifier (ReLU, ReLU6, hardtanh(x, 0, c)) between the input and "
        f"the score, so {', '.join(plain)} {'is' if len(plain) == 1 else 'are'} the plain input gradient{times}: "
        "the guided and deconv rules act on rectifiers only (GELU, SiLU, Hardswish have none)",
        PlainGradientWarning,
        stacklevel=3,
    )


def _backward_passes(scores, act, xin, rules, need_cam, state):
    """Run the backward passes; return ``{"cam": [...], rule: [...], "guided_rectifiers": n}``
    with one gradient per class."""
    # Rules differ only at rectifiers: with none between the layer and the score, the
    # first rule pass also yields the ordinary dS/dA, and no separate CAM pass is needed.
    cam_in_rule_pass = need_cam and bool(rules) and state.calls == act.calls_before_head
    plan: list[tuple[str, tuple[torch.Tensor, ...]]] = []
    if need_cam and not cam_in_rule_pass:
        plan.append((ORDINARY, (act.value,)))
    for i, rule in enumerate(rules):
        plan.append((rule, (act.value, xin) if cam_in_rule_pass and i == 0 else (xin,)))

    out: dict[str, Any] = {"cam": [], **{r: [] for r in rules}}
    k_total = scores.shape[1]
    for k in range(k_total):
        s = scores[:, k].sum()  # images are independent in eval mode
        for i, (rule, inputs) in enumerate(plan):
            state.rule = rule
            state.applied = 0
            last = k == k_total - 1 and i == len(plan) - 1
            g = torch.autograd.grad(s, inputs, retain_graph=not last, allow_unused=True)
            if rule != ORDINARY and "guided_rectifiers" not in out:
                out["guided_rectifiers"] = state.applied
            for t, gt in zip(inputs, g, strict=True):
                if gt is None:
                    gt = torch.zeros_like(t)
                out["cam" if t is act.value else rule].append(gt)
    state.rule = ORDINARY
    return out


def _score_weights(model, x, act, targets, index, k_total, batch_size) -> torch.Tensor:
    """Score-CAM's channel weights ``(N, K, C)``: the softmax over channels of the score of
    ``x`` masked by each channel's :func:`gradcam.cams.score_masks` mask.

    The masked inputs go through the model ``max(1, batch_size // N)`` channels at a time,
    all ``N`` images of a channel together, channel-major (row ``j * N + n`` is image
    ``n`` under the chunk's ``j``-th mask), without gradients.
    """
    a = act.layout.to_map(act.value.detach())
    n, c = a.shape[:2]
    per = max(1, int(batch_size) // n)
    size = x.shape[-2:]
    s: torch.Tensor | None = None
    with torch.no_grad():
        for c0 in range(0, c, per):
            masks = cams.score_masks(a[:, c0 : c0 + per], size)  # (N, m, H, W)
            m = masks.shape[1]
            batch = (masks.transpose(0, 1)[:, :, None] * x[None]).reshape(m * n, *x.shape[1:])
            lg = model(batch).reshape(m, n, -1)
            if index is not None:
                idx = (index if index.dim() == 2 else index[:, None])[None].expand(m, n, k_total)
                sc = lg.gather(2, idx)  # (m, N, K)
            else:
                sc = torch.stack([_callable_scores(targets, lg[j], n, k_total) for j in range(m)])
            if s is None:
                s = torch.empty(n, k_total, c, dtype=sc.dtype, device=sc.device)
            s[:, :, c0 : c0 + m] = sc.permute(1, 2, 0)
    return s.softmax(dim=-1)


def _callable_scores(targets, logits, n, k_total) -> torch.Tensor:
    sc = targets(logits)
    if not isinstance(sc, torch.Tensor) or sc.shape[0] != n or sc.dim() not in (1, 2):
        raise ValueError("the targets callable must return (N,) or (N, K) scores on the logits of masked inputs too")
    sc = sc[:, None] if sc.dim() == 1 else sc
    if sc.shape[1] != k_total:
        raise ValueError(
            f"the targets callable returned {sc.shape[1]} scores per image on masked inputs, not {k_total}"
        )
    return sc


def _captum(method, model, module, x, index, targets, k_total, multi, options) -> torch.Tensor:
    from gradcam.captum_adapter import attribute

    a = attribute(method, model, module, x.detach(), index, targets if index is None else None, k_total, options)
    return a if multi else a[:, 0]


def _assemble(wanted, logits, index, name, act, size, grads, rules, multi, k_total, extra, captum) -> Explanation:
    """Turn per-class gradients into the maps; ``multi`` keeps a K axis after N."""
    fields: dict[str, Any] = {}
    stack = (lambda ts: torch.stack(ts, 1)) if multi else (lambda ts: ts[0])
    layout: Layout = act.layout
    to_map = layout.to_map
    a = to_map(act.value.detach())  # (N, C, h, w); the gradients are read the same way
    if grads["cam"]:
        per_class = [cams.gradient_cams(a, to_map(g), wanted) for g in grads["cam"]]
        for m in per_class[0]:
            cam = stack([d[m] for d in per_class])
            fields[layer_field(m)] = cam
            fields[m] = _upsample(cam, size)
    if "eigencam" in wanted:
        cam = cams.eigen_projection(a).clamp(min=0)
        cam = cam[:, None].repeat(1, k_total, 1, 1) if multi else cam
        fields["eigencam_cam"], fields["eigencam"] = cam, _upsample(cam, size)
    if "scorecam" in extra:
        cam = torch.einsum("nkc,nchw->nkhw", extra["scorecam"].to(a.dtype), a).clamp(min=0)
        cam = cam if multi else cam[:, 0]
        fields["scorecam_cam"], fields["scorecam"] = cam, _upsample(cam, size)
    for rule, method, combined in (
        (GUIDED, "guided_backprop", "guided_gradcam"),
        (DECONV, "deconvnet", "deconv_gradcam"),
    ):
        if rule not in rules:
            continue
        img = stack(grads[rule])
        fields[method] = img  # computed anyway; display of the combined map needs it
        if combined in wanted:
            fields[combined] = img * fields["gradcam"].unsqueeze(-3)
    plain = isinstance(logits, torch.Tensor) and logits.dim() == 2
    return Explanation(
        logits=logits.detach() if plain else None,
        targets=index,
        layer=name,
        methods=tuple(wanted),
        layer_grid=tuple(int(v) for v in a.shape[-2:]),
        layer_layout=layout.kind,
        guided_rectifiers=grads.get("guided_rectifiers"),
        attributions=captum or None,
        **fields,
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
        if not isinstance(m, str):
            raise TypeError(f"a method is a name, not {type(m).__name__}")
        if m not in ALL_METHODS and not (is_captum(m) and len(m) > len(CAPTUM_PREFIX)):
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(ALL_METHODS)} or {CAPTUM_PREFIX}<Class>")
    return wanted


def _check_options(options, wanted: list[str]) -> dict[str, dict[str, Any]]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"method_options must be a mapping of method name to options, not {type(options).__name__}")
    out = {}
    for m, opts in options.items():
        if m not in wanted:
            raise ValueError(f"method_options names {m!r}, which is not a requested method")
        if not isinstance(opts, Mapping):
            raise TypeError(f"method_options[{m!r}] must be a mapping, not {type(opts).__name__}")
        if not is_captum(m):
            allowed = {"scorecam": {"batch_size"}}.get(m, set())
            bad = sorted(set(opts) - allowed)
            if bad:
                raise ValueError(
                    f"method_options[{m!r}]: unknown option {bad[0]!r}"
                    + (f"; {m} takes {', '.join(sorted(allowed))}" if allowed else f"; {m} takes none")
                )
            b = opts.get("batch_size", SCORECAM_BATCH)
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise ValueError(f"method_options[{m!r}]['batch_size'] must be an integer >= 1, got {b!r}")
        out[m] = dict(opts)
    return out


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, not {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, not {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch")
