"""Backward rules for rectifiers (ReLU, ReLU6), switchable between backward passes.

Guided Backprop and Deconvnet differ from the ordinary gradient only in how a rectifier
passes the gradient ``g`` back to its input ``x``:

=========  ==========================================
rule       gradient handed to ``x``
=========  ==========================================
ordinary   ``g * [x > 0]``              (ReLU6: ``g * [0 < x < 6]``)
guided     ``g * [x > 0] * [g > 0]``    (ReLU6: ``g * [0 < x < 6] * [g > 0]``)
deconv     ``g * [g > 0]``
=========  ==========================================

Every rectifier call made while :class:`RectifierRules` is active, through ``nn.ReLU``,
``nn.ReLU6``, ``F.relu``, ``torch.relu``, ``Tensor.relu``, their in-place forms,
``F.relu6`` or ``F.hardtanh(x, 0, cap)``, is computed by :class:`_Rectify`, whose forward
is the ordinary op and whose backward reads the rule from a shared :class:`RuleState` at
backward time. One forward pass therefore serves several backward passes with different
rules: the caller sets ``state.rule`` before each ``torch.autograd.grad`` call, and reads
``state.applied`` after it: the number of rectifier nodes the guided or deconv rule ran in
(autograd runs only the nodes on a path from the score to the requested inputs, so these
are the rectifier applications between input and score).

This is a ``TorchFunctionMode``, so no module is swapped or hooked and the model object is
never touched. Functional calls are covered as well as modules. Not covered: rectifiers
written as ``torch.clamp(x, min=0)`` or ``torch.where``, and TorchScript models, which do
not dispatch through Python.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

ORDINARY = "ordinary"
GUIDED = "guided"
DECONV = "deconv"
RULES = (ORDINARY, GUIDED, DECONV)


class RuleState:
    """Mutable holder of the rule that the next backward pass applies."""

    __slots__ = ("rule", "calls", "applied")

    def __init__(self, rule: str = ORDINARY) -> None:
        self.rule = rule
        self.calls = 0  # rectifier calls seen in the forward pass, in order
        self.applied = 0  # rectifier backwards run under the guided or deconv rule


class _Rectify(torch.autograd.Function):
    """``min(max(x, 0), cap)`` with a backward rule chosen at backward time.

    The mask is computed from the saved output ``y`` (``y > 0`` iff ``x > 0``, and
    ``0 < y < cap`` iff ``0 < x < cap``), which is what lets in-place rectifiers work: their
    input no longer exists once they have run.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, cap: float | None, inplace: bool, state: RuleState):
        if inplace:
            y = x.relu_() if cap is None else torch._C._nn.hardtanh_(x, 0.0, cap)
            ctx.mark_dirty(x)
        else:
            y = torch.relu(x) if cap is None else torch._C._nn.hardtanh(x, 0.0, cap)
        ctx.save_for_backward(y)
        ctx.cap = cap
        ctx.state = state
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        rule = ctx.state.rule
        if rule != ORDINARY:
            ctx.state.applied += 1
        if rule == DECONV:
            return g.clamp(min=0), None, None, None
        (y,) = ctx.saved_tensors
        if ctx.cap is None:
            # The same fused kernel that autograd uses for torch.relu.
            gx = torch.ops.aten.threshold_backward(g, y, 0)
        else:
            gx = torch.ops.aten.hardtanh_backward(g, y, 0.0, ctx.cap)
        if rule == GUIDED:
            gx.clamp_(min=0)
        return gx, None, None, None


def _relu(state, x, inplace=False):
    return _Rectify.apply(x, None, bool(inplace), state)


def _relu6(state, x, inplace=False):
    return _Rectify.apply(x, 6.0, bool(inplace), state)


def _hardtanh(state, x, min_val=-1.0, max_val=1.0, inplace=False):
    return _Rectify.apply(x, float(max_val), bool(inplace), state)


# func -> (handler, inplace-by-name). Positional and keyword arguments follow the
# signature of each public function.
_HANDLERS = {
    F.relu: lambda s, x, inplace=False: _relu(s, x, inplace),
    F.relu_: lambda s, x: _relu(s, x, True),
    torch.relu: lambda s, x: _relu(s, x, False),
    torch.relu_: lambda s, x: _relu(s, x, True),
    torch.Tensor.relu: lambda s, x: _relu(s, x, False),
    torch.Tensor.relu_: lambda s, x: _relu(s, x, True),
    F.relu6: lambda s, x, inplace=False: _relu6(s, x, inplace),
}


class RectifierRules(TorchFunctionMode):
    """Context manager: route every rectifier through :class:`_Rectify`.

    Args:
        state: the :class:`RuleState` that the backward passes read.
    """

    def __init__(self, state: RuleState) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = _HANDLERS.get(func)
        if handler is None and func is F.hardtanh and _is_rectifier_hardtanh(args, kwargs):
            handler = _hardtanh
        if handler is None or not _any_requires_grad(args):
            return func(*args, **kwargs)
        self.state.calls += 1
        return handler(self.state, *args, **kwargs)


def _is_rectifier_hardtanh(args, kwargs) -> bool:
    lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    return float(lo) == 0.0


def _any_requires_grad(args) -> bool:
    return bool(args) and isinstance(args[0], torch.Tensor) and args[0].requires_grad
