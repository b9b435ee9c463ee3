"""The bundled demo images: photos that ship inside installed wheels, nothing downloaded.

* scikit-image's ``skimage.data`` (chelsea the cat, coffee; CC0 / public domain),
* matplotlib's sample ``grace_hopper.jpg`` (public domain),
* foolbox 3.3.4's 20 labelled ImageNet validation photos (``imagenet_XX_<label>.jpg``;
  installed with ``--no-deps``, located without importing foolbox),
* two-category composites: two photos side by side in one square image, each half a
  centred portrait crop, so the ground truth of each half (class and box) is known. No
  wheel holds a natural cat-and-dog photo, hence the composites. :data:`PAIR_LAYOUT` pairs
  cat, dog and bird photos, each category on either side equally often.
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
ESPRESSO = 967
BALD_EAGLE = 22
GOOSE = 99
SPOONBILL = 129  # foolbox holds no white stork (127); its stork-like bird is a spoonbill

# The photos the two-category composites are made of: short name -> (category, ImageNet
# class). "cat" is scikit-image's chelsea; the others are foolbox's ImageNet photos.
PAIR_PHOTOS: dict[str, tuple[str, int]] = {
    "cat": ("cat", EGYPTIAN_CAT),
    "mastiff": ("dog", BULL_MASTIFF),
    "dalmatian": ("dog", DALMATIAN),
    "eagle": ("bird", BALD_EAGLE),
    "goose": ("bird", GOOSE),
    "spoonbill": ("bird", SPOONBILL),
}

# (left, right) photos of the composites: two per ordered pair of the categories cat, dog
# and bird, so every category is on the left 4 times and on the right 4 times, each dog
# photo 2 + 2 times, the birds as evenly as 8 halves over 3 photos allow.
PAIR_LAYOUT: tuple[tuple[str, str], ...] = (
    ("cat", "mastiff"),
    ("cat", "dalmatian"),
    ("mastiff", "cat"),
    ("dalmatian", "cat"),
    ("cat", "eagle"),
    ("cat", "goose"),
    ("goose", "cat"),
    ("spoonbill", "cat"),
    ("mastiff", "spoonbill"),
    ("dalmatian", "eagle"),
    ("eagle", "mastiff"),
    ("spoonbill", "dalmatian"),
)

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


def foolbox_file(label: int) -> Path:
    """The first foolbox ImageNet photo of class ``label`` (``imagenet_XX_<label>.jpg``)."""
    files = sorted(foolbox_folder().glob(f"imagenet_*_{label}.jpg"))
    if not files:
        raise UserError(f"foolbox photo with label {label} not found in {foolbox_folder()}")
    return files[0]


@lru_cache(maxsize=32)
def _foolbox_photo(label: int) -> Image.Image:
    """The photo of :func:`foolbox_file`, opened once (callers must not modify it)."""
    with Image.open(foolbox_file(label)) as im:
        return im.convert("RGB")


def chelsea() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


def coffee() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee())


def named_photos() -> list[DemoImage]:
    """Photos from scikit-image and matplotlib (labels where an ImageNet class fits)."""
    import matplotlib

    hopper = Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    with Image.open(hopper) as im:
        hopper_img = im.convert("RGB")
    return [
        DemoImage("chelsea", chelsea(), [EGYPTIAN_CAT], "scikit-image data.chelsea (CC0)"),
        DemoImage("coffee", coffee(), [ESPRESSO], "scikit-image data.coffee (CC0)"),
        DemoImage("grace-hopper", hopper_img, [906, 652], "matplotlib sample_data/grace_hopper.jpg"),
    ]


def portrait_crop(image: Image.Image, height: int) -> Image.Image:
    """Centred crop of aspect 1:2 (width:height), resized to ``(height // 2, height)``."""
    w, h = image.size
    cw = min(w, h // 2)
    ch = cw * 2
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch)).resize((height // 2, height), Image.BICUBIC)


def half_boxes(size: int = COMPOSITE_SIZE) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The left and right halves of a composite, as ``(x0, y0, x1, y1)`` pixel boxes."""
    return (0, 0, size // 2, size), (size // 2, 0, size, size)


def composite(
    left: Image.Image, right: Image.Image, left_label: int, right_label: int, id: str, source: str
) -> DemoImage:
    """Two photos side by side in a ``COMPOSITE_SIZE`` square; each half's box is known."""
    s = COMPOSITE_SIZE
    canvas = Image.new("RGB", (s, s))
    canvas.paste(portrait_crop(left, s), (0, 0))
    canvas.paste(portrait_crop(right, s), (s // 2, 0))
    left_box, right_box = half_boxes(s)
    boxes = {left_label: left_box, right_label: right_box}
    return DemoImage(id, canvas, [left_label, right_label], source, boxes)


def _pair_photo(name: str) -> Image.Image:
    """A :data:`PAIR_PHOTOS` photo ("cat" is chelsea, the others foolbox photos)."""
    return chelsea() if name == "cat" else _foolbox_photo(PAIR_PHOTOS[name][1])


def _pair_photo_source(name: str) -> str:
    return "scikit-image chelsea" if name == "cat" else f"foolbox {foolbox_file(PAIR_PHOTOS[name][1]).stem}"


def pair_source(left: str, right: str) -> str:
    """Where the pixels of composite ``"<left>-<right>"`` come from (no image is opened)."""
    return f"composite of {_pair_photo_source(left)} (left) and {_pair_photo_source(right)} (right)"


def pair_composite(left: str, right: str) -> DemoImage:
    """The composite of two :data:`PAIR_PHOTOS` photos, id ``"<left>-<right>"``."""
    if left not in PAIR_PHOTOS or right not in PAIR_PHOTOS or PAIR_PHOTOS[left][0] == PAIR_PHOTOS[right][0]:
        raise ValueError(f"no demo composite {left}-{right}: need two photos of different categories")
    labels = PAIR_PHOTOS[left][1], PAIR_PHOTOS[right][1]
    images = _pair_photo(left), _pair_photo(right)
    return composite(*images, *labels, f"{left}-{right}", pair_source(left, right))


def pair_composites() -> list[DemoImage]:
    """All :data:`PAIR_LAYOUT` composites (cat, dog and bird on either side), in that order."""
    return [pair_composite(left, right) for left, right in PAIR_LAYOUT]


def composites() -> list[DemoImage]:
    """cat|dog composites, the cat on either side so a side bias cannot pass for skill."""
    return [pair_composite("cat", "mastiff"), pair_composite("dalmatian", "cat")]


@lru_cache(maxsize=1)
def demo_images() -> tuple[DemoImage, ...]:
    """The whole demo set: named photos, foolbox photos, all pair composites."""
    return tuple(named_photos() + foolbox_photos() + pair_composites())


def demo_sheet_images() -> list[DemoImage]:
    """The few images ``make demo`` puts on its sheet."""
    by_id = {d.id: d for d in demo_images()}
    ids = ["chelsea", "coffee", "foolbox-imagenet_16_251", "foolbox-imagenet_17_22", "cat-mastiff", "dalmatian-cat"]
    return [by_id[i] for i in ids]
