"""Which layer Grad-CAM reads, and how its output is read as an ``(N, C, h, w)`` map.

The default layer is chosen from one traced forward pass (forward hooks on every module,
removed afterwards; no module is swapped). Among the modules that ran, in the order they
finished:

1. the *anchor* is the last module with parameters or buffers of its own (a conv, a norm,
   a linear layer applied per position, a block holding a layer scale...) whose output is
   a spatial map: ``(N, C, h, w)``, ``(N, h, w, C)`` or tokens ``(N, [cls +] h*w, C)``
   (see :func:`spatial_layout`), with ``h, w > 1``;
2. the layer is the last module, at or after the anchor, whose output is a map of the
   anchor's grid, read at that module's last call. Parameter-free modules that keep the
   grid (activations, a residual block's container, a ``Permute``) come after the anchor;
   pooling that shrinks the grid does not, so VGG's last max-pool and every global pooling
   are left out;
3. several modules may produce that very tensor (a block and its container, an activation
   and the block it ends): an activation that runs once is named (the paper reads the
   rectified output of the last conv layer), else the outermost module that runs once;
   two names used in the literature are kept by class: ResNet ``layer4`` and MobileNetV2
   ``features``. Pass-through placeholders (``nn.Identity``, dropout: timm's disabled
   ``norm_pre`` or ``norm``) are named only when no other module produces the tensor, so
   timm's ConvNeXt is read at ``stages``, not at an Identity ``norm_pre``;
4. With class tokens (ViT), the head reads only the class token after the final norm, so
   the patch tokens of the last block's output carry no gradient and their map would be
   zero. The trace then runs one backward pass and walks back to the last token map whose
   patch tokens reach the score: for torchvision's ViT that is the last encoder block's
   ``ln_1`` (the input of its attention, pytorch-grad-cam's ``blocks[-1].norm1``). A
   per-token ``nn.Linear`` whose input is itself such a map (timm's ``attn.qkv``, CaiT's
   and XCiT's class-attention ``attn.k``/``attn.v``) is passed over for that input: it is
   the same map in another basis, reached by only part of its gradient, so timm's ViT,
   DeiT, CaiT and XCiT are read at the last attention's ``norm1``.

This reproduces the paper's choices:

============================  =====================================================
architecture                  layer
============================  =====================================================
torchvision VGG-16            ``features.29`` (ReLU after the last conv, 14 x 14)
torchvision AlexNet           ``features.11`` (ReLU after the last conv, 13 x 13)
torchvision ResNet            ``layer4`` (the last block's rectified output)
torchvision MobileNetV2       ``features`` (ends in the last conv's ReLU6)
EfficientNet-Lite (lukemelas)  ``_swish`` (its last call: the head conv's ReLU6)
torchvision ConvNeXt          ``features`` (the last stage, channels-first)
torchvision DenseNet          ``features`` (ends in ``norm5``; its ReLU is functional)
torchvision GoogLeNet         ``inception5b`` (the auxiliary heads do not run in eval)
torchvision Swin              ``permute`` (the final norm's output, made channels-first)
torchvision ViT               ``encoder.layers.encoder_layer_<last>.ln_1`` (tokens)
timm ViT / DeiT               ``blocks.<last>.norm1`` (tokens, 1 or 2 dropped)
timm ConvNeXt, MetaFormers    ``stages`` (channels-first)
============================  =====================================================

Some fifty timm families are tested in ``tests/gradcam/test_timm_sweep.py`` (table in
``docs/engine.md``).

A module that runs more than once in a forward pass (EfficientNet-Lite's shared
``_swish``, the ``relu`` of a torchvision BasicBlock) is read at its **last** call.

Layouts (:class:`Layout`): ``channels_first`` ``(N, C, h, w)``; ``channels_last``
``(N, h, w, C)`` (Swin's stages, ConvNeXt's block internals), read permuted; ``tokens``
``(N, k + h*w, C)`` with ``k`` = 0, 1 or 2 leading class/distillation tokens dropped and
the rest laid out row by row; ``reshape``: a user callable ``output -> (N, C, h, w)``
(pytorch-grad-cam's ``reshape_transform``), applied to the layer's output and to its
gradient alike, so it must only select and rearrange elements (slice, permute, reshape).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"
TOKENS = "tokens"
RESHAPE = "reshape"

# Names used in the literature where the generic rule would name another module that
# produces the same tensor. Used only when the named module does produce it.
_BY_CLASS = {
    "ResNet": "layer4",
    "MobileNetV2": "features",
}

_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Mish,
)

# Pass-through modules (a disabled norm, a dropout in eval) are named only when nothing
# else produces their tensor.
_PLACEHOLDERS = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)

Reshape = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """How a layer's output (and its gradient) becomes an ``(N, C, h, w)`` map.

    Attributes:
        kind: ``channels_first``, ``channels_last``, ``tokens`` or ``reshape``.
        grid: ``(h, w)``.
        extra_tokens: leading tokens dropped (``tokens`` only).
        fn: the user's callable (``reshape`` only).
    """

    kind: str
    grid: tuple[int, int]
    extra_tokens: int = 0
    fn: Reshape | None = None

    def to_map(self, t: torch.Tensor) -> torch.Tensor:
        """The ``(N, C, h, w)`` view of ``t`` (the layer's output or its gradient)."""
        if self.kind == CHANNELS_FIRST:
            return t
        if self.kind == CHANNELS_LAST:
            return t.permute(0, 3, 1, 2)
        if self.kind == TOKENS:
            h, w = self.grid
            return t[:, self.extra_tokens :].reshape(t.shape[0], h, w, t.shape[-1]).permute(0, 3, 1, 2)
        return self.fn(t)


def _grid_ok(h: int, w: int, H: int, W: int) -> bool:
    """``(h, w)`` can be the grid of an ``H x W`` input: both > 1 and the same stride,
    give or take one row or column of padding."""
    return 2 <= h <= H and 2 <= w <= W and abs(h * W - w * H) <= max(H, W)


def spatial_layout(shape, H: int, W: int) -> Layout | None:
    """The layout of an output of ``shape`` for an ``H x W`` input, or None.

    4-D: channels-first when its last two sizes fit the input's grid, else channels-last
    when its middle two do (channels-first wins a tie, e.g. ``(N, 7, 7, 7)``). 3-D
    ``(N, T, C)``: tokens when exactly one ``k`` in 0, 1, 2 and one ``h x w = T - k`` with
    ``h, w > 1`` have the input's aspect ratio exactly (for a square input: ``T - k`` is a
    perfect square).
    """
    if len(shape) == 4:
        _, a, b, c = shape
        if _grid_ok(b, c, H, W):
            return Layout(CHANNELS_FIRST, (b, c))
        if _grid_ok(a, b, H, W):
            return Layout(CHANNELS_LAST, (a, b))
        return None
    if len(shape) == 3:
        found = [
            (k, h, w)
            for k in (0, 1, 2)
            for h, w in _factor_pairs(shape[1] - k)
            if 2 <= h <= H and 2 <= w <= W and h * W == w * H
        ]
        if len(found) == 1:
            k, h, w = found[0]
            return Layout(TOKENS, (h, w), extra_tokens=k)
    return None


def _factor_pairs(n: int) -> Iterator[tuple[int, int]]:
    for h in range(1, math.isqrt(max(n, 0)) + 1):
        if n % h == 0:
            yield h, n // h
            if h != n // h:
                yield n // h, h


def read_layout(out, H: int, W: int, reshape: Reshape | None = None, name: str = "") -> Layout:
    """The layout in which Grad-CAM reads the output ``out`` of layer ``name``.

    Without ``reshape``: :func:`spatial_layout`, and any other 4-D output as
    ``(N, C, h, w)``. With ``reshape``: its result, checked to be ``(N, C, h, w)``.

    Raises:
        ValueError: the output cannot be read as a map (the message says to pass
            ``reshape=``), or ``reshape`` fails or returns the wrong shape.
    """
    where = f"layer {name!r}" if name else "the Grad-CAM layer"
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"the Grad-CAM layer must output one (N, C, h, w) tensor; {where} outputs "
            f"{type(out).__name__}: choose another layer"
        )
    shape = tuple(out.shape)
    if reshape is not None:
        try:
            m = reshape(out.detach())
        except Exception as e:  # noqa: BLE001 - any failure of the user's callable
            raise ValueError(f"reshape= failed on the {shape} output of {where}: {type(e).__name__}: {e}") from e
        if not isinstance(m, torch.Tensor) or m.dim() != 4 or m.shape[0] != shape[0]:
            got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise ValueError(
                f"reshape= must turn the {shape} output of {where} into an (N, C, h, w) tensor "
                f"with N = {shape[0]}; it returned {got}"
            )
        return Layout(RESHAPE, (int(m.shape[2]), int(m.shape[3])), fn=reshape)
    layout = spatial_layout(shape, H, W)
    if layout is not None:
        return layout
    if out.dim() == 4:  # a map of another grid (1 x 1, one row...): as (N, C, h, w)
        return Layout(CHANNELS_FIRST, (shape[2], shape[3]))
    if out.dim() == 3:
        raise ValueError(
            f"{where} outputs {shape}, a token sequence whose h x w grid cannot be read "
            f"unambiguously for a {H}x{W} input: pass reshape= (a callable output -> "
            "(N, C, h, w)) to explain"
        )
    raise ValueError(
        f"the Grad-CAM layer must output one (N, C, h, w) tensor (or (N, h, w, C), or "
        f"(N, [cls +] h*w, C) tokens); {where} outputs {shape}: choose another layer or "
        "pass reshape= (a callable output -> (N, C, h, w))"
    )


# --------------------------------------------------------------------------- the trace


@dataclass
class _Record:
    name: str
    module: nn.Module
    out: torch.Tensor | None
    version: int
    layout: Layout | None
    last_call: bool = True
    inp: torch.Tensor | None = None


@dataclass(frozen=True)
class Choice:
    """The default layer for one input shape: its name and how its output is read."""

    name: str
    layout: Layout


@contextlib.contextmanager
def restored(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's training flag on exit (``Module.train`` would recurse)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def trace_layer(model: nn.Module, x: torch.Tensor) -> Choice:
    """Run ``model`` once on ``x`` in eval mode and choose the layer (module docstring).

    The model's hooks, training flags, parameters and gradients are as before afterwards,
    also when the forward pass raises.

    Raises:
        ValueError: no module outputs a spatial map, or the last one is a token sequence
            whose grid cannot be read (the message says to pass ``layer=`` and
            ``reshape=``).
    """
    H, W = int(x.shape[-2]), int(x.shape[-1])
    records: list[_Record] = []
    calls: dict[int, int] = {}
    handles = []

    def make_hook(name: str):
        def hook(mod, inp, out):
            calls[id(mod)] = calls.get(id(mod), 0) + 1
            first = inp[0] if inp and isinstance(inp[0], torch.Tensor) else None
            if isinstance(out, torch.Tensor):
                records.append(_Record(name, mod, out, out._version, spatial_layout(out.shape, H, W), inp=first))
            else:
                records.append(_Record(name, mod, None, 0, None, inp=first))

        return hook

    with restored(model), torch.inference_mode(False), torch.enable_grad():
        model.eval()
        try:
            for name, m in model.named_modules():
                handles.append(m.register_forward_hook(make_hook(name)))
            xin = x.detach().clone().requires_grad_(True)
            logits = model(xin)
        finally:
            for h in handles:
                h.remove()
        seen: set[int] = set()
        for r in reversed(records):  # mark every call but each module's last
            r.last_call = id(r.module) not in seen
            seen.add(id(r.module))
        return _choose(model, records, calls, logits, H, W)


def _has_state(m: nn.Module) -> bool:
    return next(m.parameters(recurse=False), None) is not None or next(m.buffers(recurse=False), None) is not None


def _choose(model, records, calls, logits, H, W) -> Choice:
    anchor = next(
        (i for i in range(len(records) - 1, -1, -1) if records[i].layout is not None and _has_state(records[i].module)),
        None,
    )
    if anchor is None:
        raise ValueError(
            f"cannot choose a Grad-CAM layer for {type(model).__name__}: no module outputs a "
            f"spatial map for a {H}x{W} input; pass layer= explicitly"
        )
    grid = records[anchor].layout.grid
    on_grid = [
        i
        for i in range(anchor, len(records))
        if records[i].layout is not None and records[i].layout.grid == grid and records[i].last_call
    ]
    if not on_grid:  # the anchor's module runs again later, off the grid
        raise ValueError(
            f"cannot choose a Grad-CAM layer for {type(model).__name__}: {records[anchor].name!r} "
            "runs again after its last spatial output; pass layer= explicitly"
        )
    pick = on_grid[-1]
    for r in records[pick + 1 :]:
        if r.out is not None and r.out.dim() == 3 and r.layout is None and r.out.shape[1] >= 4 and r.last_call:
            raise ValueError(
                f"cannot choose a Grad-CAM layer for {type(model).__name__}: {r.name!r} outputs "
                f"{tuple(r.out.shape)}, a token sequence whose h x w grid cannot be read for a "
                f"{H}x{W} input; pass layer= and reshape= (a callable output -> (N, C, h, w))"
            )
    if records[pick].layout.kind == TOKENS and records[pick].layout.extra_tokens:
        pick = _last_reaching_score(records, logits, pick, grid)
    return Choice(_name_of(model, records, calls, pick), records[pick].layout)


def _last_reaching_score(records, logits, pick, grid) -> int:
    """The last map on ``grid`` up to ``pick`` whose grid positions reach the score.

    The score is the sum of the logits; where that gives no gradient anywhere (a head
    initialised to zero, as torchvision's ViT without weights), a fixed random projection
    of the head's input (the last module's 2-D input) stands in for it.
    """
    cands = [
        i
        for i in range(pick + 1)
        if records[i].layout is not None
        and records[i].layout.grid == grid
        and records[i].last_call
        and records[i].out.requires_grad
        and records[i].out._version == records[i].version
    ]
    # A per-token projection of a candidate (timm's ``attn.qkv``, CaiT's ``attn.k``/``attn.v``)
    # is that map in another basis, reached by part of its gradient: read its input instead.
    outs = {id(records[i].out) for i in cands}
    cands = [i for i in cands if not (isinstance(records[i].module, nn.Linear) and id(records[i].inp) in outs)]
    unique = list({id(records[i].out): records[i].out for i in cands}.values())
    if not unique:
        return pick
    scores = []
    if isinstance(logits, torch.Tensor) and logits.requires_grad:
        scores.append(logits.float().sum())
    head_in = next(
        (r.inp for r in reversed(records[:-1]) if r.inp is not None and r.inp.dim() == 2 and r.inp.requires_grad), None
    )
    if head_in is not None:
        g = torch.Generator().manual_seed(0)
        v = torch.randn(head_in.shape[1:], generator=g).to(head_in.device, head_in.dtype)
        scores.append((head_in * v).float().sum())
    for k, score in enumerate(scores):
        grads = torch.autograd.grad(score, unique, allow_unused=True, retain_graph=k < len(scores) - 1)
        by_id = {id(t): g for t, g in zip(unique, grads, strict=True)}
        for i in reversed(cands):
            g = by_id[id(records[i].out)]
            if g is not None and bool(records[i].layout.to_map(g).abs().sum() > 0):
                return i
    return pick


def _name_of(model, records, calls, pick) -> str:
    """Name the tensor of ``records[pick]`` (step 3 of the module docstring)."""
    r = records[pick]
    group = [q for q in records[: pick + 1] if q.out is r.out and q.version == r.version and q.last_call]
    named = [q for q in group if not isinstance(q.module, _PLACEHOLDERS)]
    group = named or group  # timm's disabled ``norm_pre``/``norm`` are Identity: name the stage
    names = [q.name for q in group]
    preferred = _BY_CLASS.get(type(model).__name__)
    if preferred in names:
        return preferred
    once = [q for q in group if calls[id(q.module)] == 1]
    acts = [q for q in once if isinstance(q.module, _ACTIVATIONS)]
    if acts:
        return acts[-1].name
    if once:
        return once[-1].name
    return r.name


# --------------------------------------------------------------------------- public API

# model -> {input shape key: (module fingerprint, Choice)}. Weak keys: a model that is
# gone takes its entries with it; the fingerprint catches modules replaced in place.
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple:
    return tuple((n, id(m)) for n, m in model.named_modules())


def choose_layer(model: nn.Module, x: torch.Tensor) -> Choice:
    """:func:`trace_layer` on the first image of ``x``, cached per model and input shape."""
    key = (tuple(x.shape[1:]), x.dtype, x.device)
    fp = _fingerprint(model)
    try:
        per_model = _CACHE.setdefault(model, {})
    except TypeError:  # an unhashable model: no cache
        return trace_layer(model, x[:1])
    hit = per_model.get(key)
    if hit is not None and hit[0] == fp:
        return hit[1]
    choice = trace_layer(model, x[:1])
    per_model[key] = (fp, choice)
    return choice


def probe_input(model: nn.Module, input_size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """A seeded ``(1, C, S, S)`` input for tracing ``model`` without a real one.

    ``C`` is the first ``nn.Conv2d``'s input channels; ``S`` is ``input_size``, else the
    model's ``camstudy_input_size``, else 224.
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(
            f"cannot choose a Grad-CAM layer for {type(model).__name__}: it has no nn.Conv2d "
            "to size a probe input; pass layer= explicitly, or an input x"
        )
    size = input_size or getattr(model, "camstudy_input_size", 224)
    h, w = (size, size) if isinstance(size, int) else size
    p = next(model.parameters(), None)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, conv.in_channels, int(h), int(w), generator=g)
    return x if p is None else x.to(device=p.device, dtype=p.dtype if p.is_floating_point() else None)


def default_layer(
    model: nn.Module, x: torch.Tensor | None = None, input_size: int | tuple[int, int] | None = None
) -> str:
    """Name of the paper's Grad-CAM layer for ``model`` (see the module docstring).

    Args:
        model: the network.
        x: an input batch to trace with; None for :func:`probe_input` at ``input_size``.
        input_size: the probe's size when ``x`` is None (default: the model's
            ``camstudy_input_size``, else 224). The choice can depend on it: at 32 px a
            ResNet's ``layer4`` is 1 x 1 and the last spatial map lies in ``layer3``.
    """
    if x is None:
        x = probe_input(model, input_size)
    return choose_layer(model, x).name


def resolve_layer(
    model: nn.Module, layer: str | nn.Module | None, x: torch.Tensor | None = None
) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` for a dotted name, a module of ``model``, or None.

    None is :func:`default_layer` traced with ``x`` (a probe input when ``x`` is None).

    Raises:
        ValueError: the name is not a module of ``model`` (the message suggests close
            names), or the module object does not belong to ``model``.
        TypeError: ``layer`` is neither a string, a module nor None.
    """
    named = dict(model.named_modules())
    if layer is None:
        name = default_layer(model, x)
        return name, named[name]
    if isinstance(layer, str):
        if layer not in named or layer == "":
            close = difflib.get_close_matches(layer, [n for n in named if n], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown layer {layer!r} for {type(model).__name__}{hint}")
        return layer, named[layer]
    if isinstance(layer, nn.Module):
        for name, m in named.items():
            if m is layer:
                return name, m
        raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
    raise TypeError(f"layer must be a module name, an nn.Module or None, not {type(layer).__name__}")
