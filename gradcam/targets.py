"""Turning the ``targets`` argument of :func:`gradcam.explain` into scores to differentiate."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Targets = int | Sequence[int] | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def as_index_tensor(targets: Targets, n: int, device: torch.device) -> torch.Tensor | None:
    """Class indices as an ``(N,)`` or ``(N, K)`` int64 tensor; None for a callable.

    Checked before the forward pass so a wrong count fails fast: a sequence must hold
    exactly ``n`` entries (never truncated or broadcast, except a lone int).

    Raises:
        TypeError: a non-integer or boolean target, or an unsupported container.
        ValueError: the count does not match the batch, or a negative index.
    """
    if callable(targets) and not isinstance(targets, torch.Tensor):
        return None
    if isinstance(targets, bool):
        raise TypeError("targets must be class indices, not a bool")
    if isinstance(targets, int):
        t = torch.full((n,), targets, dtype=torch.long)
    else:
        if isinstance(targets, torch.Tensor):
            t = targets
        elif isinstance(targets, (list, tuple)):
            if any(isinstance(v, bool) or not isinstance(v, (int, list, tuple)) for v in targets):
                raise TypeError("targets must be int class indices")
            t = torch.tensor(targets)
        else:
            raise TypeError(
                "targets must be an int, a sequence of ints, an (N,) or (N, K) tensor, "
                f"or a callable, not {type(targets).__name__}"
            )
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise TypeError(f"targets must hold integer class indices, not {t.dtype}")
        if t.dim() not in (1, 2):
            raise ValueError(f"targets must be (N,) or (N, K), got shape {tuple(t.shape)}")
        if t.shape[0] != n:
            raise ValueError(f"got {t.shape[0]} targets for a batch of {n} images")
        if t.dim() == 2 and t.shape[1] == 0:
            raise ValueError("targets of shape (N, K) need K >= 1")
    if (t < 0).any():
        raise ValueError(f"target {int(t.min())} is out of range: class indices start at 0")
    return t.to(device=device, dtype=torch.long)


def check_range(t: torch.Tensor, num_classes: int) -> None:
    """Raise ValueError when an index is not below the number of logits."""
    if t.numel() and int(t.max()) >= num_classes:
        raise ValueError(f"target {int(t.max())} is out of range for {num_classes} classes")


def scores_from(
    targets: Targets, index: torch.Tensor | None, logits, need_grad: bool = True, n: int | None = None
) -> tuple[torch.Tensor, bool]:
    """The differentiated scores as ``(N, K)`` (pre-softmax logits, or the callable's
    output), and whether the caller asked for a K axis (an ``(N, K)`` request).

    ``need_grad=False``: the forward ran without gradients (only gradient-free methods were
    requested), so a callable's scores are not checked to depend on the model. ``n``: the
    batch size (default ``logits.shape[0]``); a callable may receive any model output."""
    if index is None:
        n = logits.shape[0] if n is None else n
        scores = targets(logits)  # type: ignore[operator]
        if not isinstance(scores, torch.Tensor):
            raise TypeError(f"the targets callable must return a tensor, not {type(scores).__name__}")
        if scores.dim() not in (1, 2) or scores.shape[0] != n:
            raise ValueError(
                f"the targets callable must return (N,) or (N, K) scores for N={n}, got shape {tuple(scores.shape)}"
            )
        if need_grad and not scores.requires_grad:
            raise ValueError("the targets callable returned scores that do not depend on the model")
        return (scores, True) if scores.dim() == 2 else (scores[:, None], False)
    check_range(index, logits.shape[1])
    if index.dim() == 2:
        return logits.gather(1, index), True
    return logits.gather(1, index[:, None]), False
