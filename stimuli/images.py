"""Reading images and choosing the device: the small I/O helpers every stage shares."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from camstudy.errors import UserError


def load_image(path: str | Path) -> Image.Image:
    """Open ``path`` as RGB; a missing or unreadable file is a :class:`UserError`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"cannot read image {p}: {e.__class__.__name__}") from None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else the CPU; an unavailable CUDA is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is available")
    return device
