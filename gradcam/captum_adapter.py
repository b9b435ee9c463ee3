"""Any captum input-attribution class as a method of :func:`gradcam.explain`.

A method named ``"captum:<Class>"`` (``"captum:IntegratedGradients"``,
``"captum:Occlusion"``, ``"captum:Saliency"``, ``"captum:DeepLift"``...) runs
``captum.attr.<Class>`` on the same batch and targets and returns its attribution
``(N, C, H, W)`` (``(N, K, C, H, W)`` for ``K`` targets per image), detached, in
``Explanation.attributions[method]``. captum is imported only when such a method is
requested; without it the call fails with :class:`CaptumMissing` (an ``ImportError`` and a
``ValueError``, so the command line prints one line).

Accepted: subclasses of ``captum.attr.Attribution`` that attribute to the *input* (not
``Layer*``/``Neuron*`` classes, nor ``NoiseTunnel``, which wraps another method). The
constructor gets a module that computes the scores from the input (first argument,
whether captum calls it ``forward_func`` or ``model``) and, if it asks for ``layer``
(``GuidedGradCam``), the Grad-CAM layer of the call.

Targets: class indices are handed to captum as ``target=`` (one ``attribute`` call per
column of an ``(N, K)`` target). A callable target is applied inside the scored module to
the logits of every batch captum evaluates, in chunks of ``N`` rows (captum lays out its
perturbed or interpolated copies of a batch of ``N`` as consecutive blocks of ``N``: row
``j * N + n`` is a copy of image ``n``), and captum's ``target=`` selects its column.

Default keyword arguments of ``attribute`` (the caller's ``method_options`` replace them
key by key; every other class gets captum's own defaults):

====================  ===================================================================
class                 defaults
====================  ===================================================================
IntegratedGradients   ``baselines=0`` (zeros in the model's input space: for an
                      ImageNet-normalized input, the mean colour), ``n_steps=32``
                      (Gauss-Legendre), ``internal_batch_size = N * max(1, 32 // N)``
Occlusion             ``sliding_window_shapes=(C, s, s)``, ``strides=(C, s//2, s//2)``
                      with ``s = max(2, round(min(H, W) / 7))`` (32 px at 224), ``baselines=0``,
                      ``perturbations_per_eval = max(1, 32 // N)``
FeatureAblation       ``feature_mask``: a grid of ``s x s`` squares shared by the channels
                      (``s`` as for Occlusion), ``baselines=0``,
                      ``perturbations_per_eval = max(1, 32 // N)``
GradientShap          ``baselines``: one zero image, ``n_samples=8``, ``stdevs=0.1``
DeepLiftShap          ``baselines``: two zero images
====================  ===================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

PREFIX = "captum:"


class CaptumMissing(ImportError, ValueError):
    """A ``captum:`` method was requested and captum is not installed."""


def is_captum(method: str) -> bool:
    return isinstance(method, str) and method.startswith(PREFIX)


def attribution_class(method: str):
    """The ``captum.attr`` class that ``"captum:<Class>"`` names.

    Raises:
        CaptumMissing: captum is not installed.
        ValueError: no such class, or one that does not attribute to the input.
    """
    name = method[len(PREFIX) :]
    try:
        import captum.attr as attr
    except ImportError:
        raise CaptumMissing(f"method {method!r} needs captum, which is not installed (pip install captum)") from None
    cls = getattr(attr, name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, attr.Attribution)):
        known = sorted(n for n in dir(attr) if _is_input_attribution(getattr(attr, n), attr))
        raise ValueError(f"unknown captum method {method!r}; captum.attr offers {', '.join(known)}")
    if not _is_input_attribution(cls, attr):
        raise ValueError(
            f"{method!r} does not attribute to the input (layer, neuron or wrapper attributions "
            "are not methods of explain; the CAM family is built in)"
        )
    return cls


# Not methods: a wrapper of another method, the data-loader and LIME bases, and the
# abstract bases whose ``attribute`` is not implemented.
_NOT_METHODS = (
    "NoiseTunnel",
    "DataLoaderAttribution",
    "LimeBase",
    "Attribution",
    "GradientAttribution",
    "PerturbationAttribution",
)


def _is_input_attribution(cls, attr) -> bool:
    return (
        isinstance(cls, type)
        and issubclass(cls, attr.Attribution)
        and not issubclass(cls, (attr.LayerAttribution, attr.NeuronAttribution))
        and cls.__name__ not in _NOT_METHODS
        and "LLM" not in cls.__name__
    )


def default_kwargs(name: str, x: torch.Tensor) -> dict[str, Any]:
    """The defaults of the module docstring's table for a batch ``x`` of ``(N, C, H, W)``."""
    n, c, h, w = x.shape
    s = max(2, round(min(h, w) / 7))
    per_eval = max(1, 32 // n)
    if name == "IntegratedGradients":
        return {"baselines": 0.0, "n_steps": 32, "internal_batch_size": n * per_eval}
    if name == "Occlusion":
        return {
            "sliding_window_shapes": (c, s, s),
            "strides": (c, max(1, s // 2), max(1, s // 2)),
            "baselines": 0.0,
            "perturbations_per_eval": per_eval,
        }
    if name == "FeatureAblation":
        rows = torch.arange(h, device=x.device) // s
        cols = torch.arange(w, device=x.device) // s
        mask = rows[:, None] * (int(cols[-1]) + 1) + cols[None, :]
        return {
            "feature_mask": mask[None, None].expand(1, c, h, w),
            "baselines": 0.0,
            "perturbations_per_eval": per_eval,
        }
    if name == "GradientShap":
        return {"baselines": torch.zeros_like(x[:1]), "n_samples": 8, "stdevs": 0.1}
    if name == "DeepLiftShap":
        return {"baselines": torch.zeros_like(x[:1]).expand(2, c, h, w).contiguous()}
    return {}


class _Scored(nn.Module):
    """The model followed by the call's score: logits for class indices (captum's
    ``target=`` picks them), or the callable target applied per block of ``n`` rows."""

    def __init__(self, model: nn.Module, score: Callable | None, n: int, method: str) -> None:
        super().__init__()
        self.model = model
        self.score = score
        self.n = n
        self.method = method

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        logits = self.model(inp)
        if self.score is None:
            return logits
        b = logits.shape[0]
        if b % self.n:
            raise ValueError(
                f"{self.method} evaluated the model on {b} inputs, not a multiple of the batch of "
                f"{self.n}: a callable target cannot be applied; pass class indices"
            )
        parts = []
        for j in range(b // self.n):
            s = self.score(logits[j * self.n : (j + 1) * self.n])
            parts.append(s[:, None] if s.dim() == 1 else s)
        return torch.cat(parts)


def attribute(
    method: str,
    model: nn.Module,
    layer: nn.Module,
    x: torch.Tensor,
    index: torch.Tensor | None,
    score: Callable | None,
    k_total: int,
    options: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Run one captum method; return ``(N, K, C, H, W)``, detached.

    Args:
        method: ``"captum:<Class>"``.
        model: the network, already in eval mode.
        layer: the Grad-CAM layer (for classes whose constructor asks for one).
        x: ``(N, C, H, W)`` input.
        index: ``(N,)`` or ``(N, K)`` class indices, or None for a callable ``score``.
        score: the callable target, or None.
        k_total: ``K``, the number of scores per image.
        options: keyword arguments of ``attribute`` replacing the defaults.
    """
    cls = attribution_class(method)
    name = cls.__name__
    scored = _Scored(model, score if index is None else None, x.shape[0], method)
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    args: list[Any] = [scored]
    kw: dict[str, Any] = {}
    for p in params[1:]:
        if p.name == "layer":
            kw["layer"] = layer
        elif p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            raise ValueError(f"{method}: its constructor needs {p.name!r}, which explain cannot give")
    algo = cls(*args, **kw)
    kwargs = {**default_kwargs(name, x), **dict(options or {})}
    out = []
    for k in range(k_total):
        if index is None:
            target: Any = k
        else:
            target = index if index.dim() == 1 else index[:, k]
        inp = x.detach().clone().requires_grad_(True)
        try:
            a = algo.attribute(inp, target=target, **kwargs)
        except TypeError as e:
            raise ValueError(f"{method}: captum's attribute() rejected its arguments: {e}") from e
        if isinstance(a, tuple):
            a = a[0]
        if not isinstance(a, torch.Tensor) or tuple(a.shape) != tuple(x.shape):
            got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(f"{method} returned {got}, not an attribution of the input's shape {tuple(x.shape)}")
        out.append(a.detach())
    return torch.stack(out, 1)
