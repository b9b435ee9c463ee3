"""What an image source yields: images with their categories and boxes.

Categories are the study's human-facing names ("cat", "dog"): what a worker is asked to
choose between. :class:`CategoryMap` ties each to the set of class indices it covers in a
model's output space (ImageNet's 1000 classes hold many dog breeds; a VOC model has one
"dog" class), so the same study can run on any model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from camstudy.errors import UserError


@dataclass(frozen=True)
class Box:
    """An annotated object: its category and pixel box ``(x0, y0, x1, y1)`` in the image.

    Coordinates are 0-based and half-open (``x1``, ``y1`` exclusive), in the original
    image's pixels; VOC's 1-based inclusive boxes are converted on reading.
    """

    category: str
    x0: float
    y0: float
    x1: float
    y1: float
    difficult: bool = False

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True)
class ImageRecord:
    """One image of a source.

    Attributes:
        id: unique within the source, stable across runs (used in stimulus ids and files).
        categories: the categories the image shows, sorted, without duplicates.
        boxes: annotated objects, when the source has them.
        path: the file, or None for in-memory images (the bundled composites).
        source: where the pixels came from (kept in the manifest).
        loader: how to get the pixels when ``path`` is None.
    """

    id: str
    categories: tuple[str, ...]
    boxes: tuple[Box, ...] = ()
    path: Path | None = None
    source: str = ""
    loader: Callable[[], Image.Image] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if list(self.categories) != sorted(set(self.categories)):
            raise ValueError(f"image {self.id!r}: categories must be sorted and unique")
        for b in self.boxes:
            if b.category not in self.categories:
                raise ValueError(f"image {self.id!r}: box of {b.category!r}, not one of its categories")

    def load(self) -> Image.Image:
        """The RGB pixels; a missing or unreadable file is a :class:`UserError`."""
        if self.loader is not None:
            return self.loader()
        if self.path is None:
            raise UserError(f"image {self.id!r} has neither a file nor a loader")
        from stimuli.images import load_image

        return load_image(self.path)


def parse_class_spec(spec: Iterable[int | str], num_classes: int, field_name: str) -> tuple[int, ...]:
    """Class indices from ints and ``"a-b"`` ranges (inclusive), e.g. ``[281, "151-268"]``."""
    out: list[int] = []
    for item in spec:
        if isinstance(item, bool):
            raise UserError(f"{field_name}: {item!r} is not a class index or range")
        if isinstance(item, int):
            lo = hi = item
        elif isinstance(item, str) and re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", item):
            lo, hi = (int(v) for v in item.split("-"))
        elif isinstance(item, str) and item.strip().isdigit():
            lo = hi = int(item)
        else:
            raise UserError(f"{field_name}: {item!r} is not a class index or an 'a-b' range")
        if lo > hi or lo < 0 or hi >= num_classes:
            raise UserError(f"{field_name}: {item!r} is outside the model's {num_classes} classes")
        out.extend(range(lo, hi + 1))
    if not out:
        raise UserError(f"{field_name}: empty class list")
    return tuple(sorted(set(out)))


class CategoryMap:
    """Category name -> class indices of one model.

    A category declared in the config maps to its listed indices; any other category maps
    to the model class of the same name (case-insensitive), which covers VOC-style models
    and ImageNet class names used directly as categories.
    """

    def __init__(self, class_names: list[str], declared: Mapping[str, Iterable[int | str]] | None = None):
        self.class_names = class_names
        self._lower = {n.lower(): i for i, n in enumerate(class_names)}
        self._declared = {
            name: parse_class_spec(spec, len(class_names), f"categories.{name}")
            for name, spec in (declared or {}).items()
        }

    def classes(self, category: str) -> tuple[int, ...] | None:
        """The class indices of ``category``, or None when the model has no such class."""
        if category in self._declared:
            return self._declared[category]
        i = self._lower.get(category.lower())
        return None if i is None else (i,)

    def category_of(self, class_index: int, among: Iterable[str]) -> str | None:
        """Which of the categories ``among`` covers ``class_index`` (None if none does)."""
        for c in among:
            cls = self.classes(c)
            if cls is not None and class_index in cls:
                return c
        return None
