"""The bundled demo images: photos that ship inside installed wheels, nothing downloaded.

* scikit-image's ``skimage.data`` (chelsea the cat, coffee; CC0 / public domain),
* matplotlib's sample ``grace_hopper.jpg`` (public domain),
* foolbox 3.3.4's 20 labelled ImageNet validation photos (``imagenet_XX_<label>.jpg``;
  installed with ``--no-deps``, located without importing foolbox),
* two-category composites: two photos side by side in one square image, each half a
  centred portrait crop, so the ground truth of each half (class and box) is known. No
  wheel holds a natural cat-and-dog photo, hence the composites.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image

from camstudy.errors import UserError

# ImageNet indices of the classes the demo photos show.
EGYPTIAN_CAT = 285  # both offline models' top-1 for chelsea
BULL_MASTIFF = 243
DALMATIAN = 251

COMPOSITE_SIZE = 512


@dataclass
class DemoImage:
    """One demo image.

    Attributes:
        id: stable identifier (used in file names and manifests).
        image: RGB PIL image.
        labels: ImageNet class indices shown (empty when no ImageNet class fits).
        boxes: per label, the ``(x0, y0, x1, y1)`` pixel box it occupies (composites).
        source: where the pixels came from.
    """

    id: str
    image: Image.Image
    labels: list[int]
    source: str
    boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)


def foolbox_folder() -> Path:
    """foolbox's data folder, found without importing foolbox (it needs eagerpy & co)."""
    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.origin is None:
        raise UserError("the demo photos need foolbox's data: pip install --no-deps foolbox==3.3.4")
    return Path(spec.origin).parent / "data"


def foolbox_photos() -> list[DemoImage]:
    """foolbox's 20 labelled ImageNet photos, label from the file name."""
    out = []
    for path in sorted(foolbox_folder().glob("imagenet_*.jpg")):
        label = int(path.stem.rsplit("_", 1)[1])
        with Image.open(path) as im:
            out.append(DemoImage(f"foolbox-{path.stem}", im.convert("RGB"), [label], f"foolbox 3.3.4 {path.name}"))
    return out


def _foolbox_photo(label: int) -> Image.Image:
    for d in foolbox_photos():
        if d.labels == [label]:
            return d.image
    raise UserError(f"foolbox photo with label {label} not found in {foolbox_folder()}")


def chelsea() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


def named_photos() -> list[DemoImage]:
    """Photos from scikit-image and matplotlib (labels where an ImageNet class fits)."""
    import matplotlib
    from skimage import data

    hopper = Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    with Image.open(hopper) as im:
        hopper_img = im.convert("RGB")
    return [
        DemoImage("chelsea", chelsea(), [EGYPTIAN_CAT], "scikit-image data.chelsea (CC0)"),
        DemoImage("coffee", Image.fromarray(data.coffee()), [967], "scikit-image data.coffee (CC0)"),
        DemoImage("grace-hopper", hopper_img, [906, 652], "matplotlib sample_data/grace_hopper.jpg"),
    ]


def portrait_crop(image: Image.Image, height: int) -> Image.Image:
    """Centred crop of aspect 1:2 (width:height), resized to ``(height // 2, height)``."""
    w, h = image.size
    cw = min(w, h // 2)
    ch = cw * 2
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch)).resize((height // 2, height), Image.BICUBIC)


def composite(
    left: Image.Image, right: Image.Image, left_label: int, right_label: int, id: str, source: str
) -> DemoImage:
    """Two photos side by side in a ``COMPOSITE_SIZE`` square; each half's box is known."""
    s = COMPOSITE_SIZE
    canvas = Image.new("RGB", (s, s))
    canvas.paste(portrait_crop(left, s), (0, 0))
    canvas.paste(portrait_crop(right, s), (s // 2, 0))
    boxes = {left_label: (0, 0, s // 2, s), right_label: (s // 2, 0, s, s)}
    return DemoImage(id, canvas, [left_label, right_label], source, boxes)


def composites() -> list[DemoImage]:
    """cat|dog composites, the cat on either side so a side bias cannot pass for skill."""
    cat = chelsea()
    mastiff, dalmatian = _foolbox_photo(BULL_MASTIFF), _foolbox_photo(DALMATIAN)
    src = "composite of scikit-image chelsea and foolbox imagenet_{:02d}"
    return [
        composite(cat, mastiff, EGYPTIAN_CAT, BULL_MASTIFF, "cat-mastiff", src.format(0)),
        composite(dalmatian, cat, DALMATIAN, EGYPTIAN_CAT, "dalmatian-cat", src.format(16)),
    ]


@lru_cache(maxsize=1)
def demo_images() -> tuple[DemoImage, ...]:
    """The whole demo set: named photos, foolbox photos, composites."""
    return tuple(named_photos() + foolbox_photos() + composites())


def demo_sheet_images() -> list[DemoImage]:
    """The few images ``make demo`` puts on its sheet."""
    by_id = {d.id: d for d in demo_images()}
    ids = ["chelsea", "coffee", "foolbox-imagenet_16_251", "foolbox-imagenet_17_22", "cat-mastiff", "dalmatian-cat"]
    return [by_id[i] for i in ids]
