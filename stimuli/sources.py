"""Image sources of the offline stage: where a study's photos, categories and boxes come from.

Every source returns ``list[ImageRecord]`` sorted by id, ids unique (a duplicate is a
:class:`UserError`). Pixels are not read here: file sources check that each file exists and
:meth:`ImageRecord.load` opens it later; the demo set builds its images on first use.

Ids are stable across runs and use ``/`` as the folder separator (``"cat/img01"``), exactly
the image's path relative to its root without the extension. Whoever turns an id into a
file name must map ``/`` (to a subfolder, or to ``__``).

* :func:`folder_source`: every image under a folder, the category from the subfolder.
* :func:`csv_source`: a CSV of ``path, labels[, boxes][, id]``.
* :func:`voc_source`: PASCAL VOC ``ImageSets/Main``, ``Annotations``, ``JPEGImages``.
* :func:`demo_source`: the bundled photos and cat/dog/bird composites (:data:`DEMO_CATEGORIES`).
* :func:`load_source`: the config's ``[source]`` table, dispatched on ``type``.
"""

from __future__ import annotations

import csv
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from camstudy.errors import UserError
from stimuli import demo_set
from stimuli.records import Box, ImageRecord, parse_class_spec

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# The demo's study categories as ImageNet class index ranges (inclusive), for CategoryMap.
DEMO_CATEGORIES: dict[str, list[int | str]] = {
    "cat": ["281-285"],
    "dog": ["151-268"],
    "bird": ["7-24", "80-100", "127-146"],
}

CSV_COLUMNS: tuple[str, ...] = ("path", "labels", "boxes", "id")


# --------------------------------------------------------------------------- shared helpers


def _sorted_unique(records: Iterable[ImageRecord], where: str) -> list[ImageRecord]:
    """``records`` sorted by id; two records with one id are a UserError naming both."""
    seen: dict[str, ImageRecord] = {}
    for r in records:
        if r.id in seen:
            raise UserError(f"{where}: duplicate image id {r.id!r} ({_origin(seen[r.id])} and {_origin(r)})")
        seen[r.id] = r
    return [seen[i] for i in sorted(seen)]


def _origin(record: ImageRecord) -> str:
    return str(record.path) if record.path is not None else record.source


def _categories(names: Iterable[str]) -> tuple[str, ...]:
    """Sorted, without duplicates, inner whitespace collapsed, empty names dropped."""
    return tuple(sorted({" ".join(n.split()) for n in names} - {""}))


# --------------------------------------------------------------------------- folder


def folder_source(
    root: str | Path, labels: str = "subfolders", extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> list[ImageRecord]:
    """Every image under ``root``, recursively.

    Args:
        root: the folder.
        labels: ``"subfolders"``: the ImageNet-style layout ``root/<category>/.../<file>``;
            the first folder below ``root`` is the image's single category, and an image
            lying directly in ``root`` is a UserError. ``"none"``: no categories.
        extensions: file name endings that count as images, case-insensitive, with or
            without the dot (default :data:`IMAGE_EXTENSIONS`).

    A file or folder whose name starts with ``.`` is ignored, as is any other file.
    The id is the path relative to ``root`` without the extension, ``/``-separated
    (``root/cat/a.jpg`` -> ``"cat/a"``); ``a.jpg`` beside ``a.png`` is a duplicate id.
    """
    root = Path(root)
    if labels not in ("subfolders", "none"):
        raise UserError(f"labels: {labels!r} is neither 'subfolders' nor 'none'")
    if not root.is_dir():
        raise UserError(f"{root}: image folder not found")
    exts = _extensions(extensions)
    files = _image_files(root, exts)
    if not files:
        raise UserError(f"{root}: no images ({' '.join(exts)}) in the folder or below it")
    return _sorted_unique((_folder_record(root, f, labels) for f in files), str(root))


def _extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = [extensions]
    exts = tuple(sorted({"." + e.lower().lstrip(".") for e in extensions if e.strip(". ")}))
    if not exts:
        raise UserError("extensions: empty list of image file endings")
    return exts


def _image_files(root: Path, exts: tuple[str, ...]) -> list[Path]:
    """Non-hidden files under ``root`` (hidden folders skipped) with one of ``exts``."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(
            Path(folder, f)
            for f in sorted(files)
            if not f.startswith(".") and Path(f).suffix.lower() in exts and Path(folder, f).is_file()
        )
    return out


def _folder_record(root: Path, file: Path, labels: str) -> ImageRecord:
    rel = PurePosixPath(file.relative_to(root).as_posix())
    categories: tuple[str, ...] = ()
    if labels == "subfolders":
        if len(rel.parts) < 2:
            raise UserError(
                f"{root}: {rel} lies outside any category subfolder "
                "(labels = 'subfolders' wants root/<category>/<file>; use labels = 'none')"
            )
        categories = _categories([rel.parts[0]])
    return ImageRecord(str(rel.with_suffix("")), categories, path=file, source=f"folder {root}")


# --------------------------------------------------------------------------- CSV


def csv_source(path: str | Path) -> list[ImageRecord]:
    """Images listed in a UTF-8 CSV file with a header row.

    Columns (names case-insensitive; any other column is a UserError, to catch typos):

    * ``path`` (required): the image file, relative to the CSV's folder, or absolute.
    * ``labels`` (required): the image's categories separated by ``;``
      (``"cat; dog"``); at least one.
    * ``boxes`` (optional): objects separated by ``;``, each ``category x0 y0 x1 y1`` in
      pixels, ``x0 < x1``, ``y0 < y1``, the category one of the row's labels and free to
      contain spaces (``"cat 10 20 110 200; folding chair 200 20 300 200"``).
    * ``id`` (optional; an empty cell takes the default): default is ``path`` as written,
      ``/``-separated, without the extension and without a leading ``/``.

    Each image file must exist (it is not opened here). Errors name the CSV and the row as a
    spreadsheet numbers it (the header is row 1): ``"images.csv: row 3: image not found: ..."``.
    Blank rows are skipped.
    """
    path = Path(path)
    header, rows = _read_csv(path)
    records = [_csv_record(path, n, dict(zip(header, cells, strict=True))) for n, cells in rows]
    if not records:
        raise UserError(f"{path}: no image rows below the header")
    return _sorted_unique(records, str(path))


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The checked header and the non-blank rows (row number, cells padded to the header)."""
    if not path.is_file():
        raise UserError(f"{path}: CSV file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            table = list(csv.reader(f))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise UserError(f"{path}: malformed CSV: {e}") from None
    if not table:
        raise UserError(f"{path}: empty file; expected a header row such as 'path,labels'")
    header = [c.strip().lower() for c in table[0]]
    _check_header(path, header)
    rows = []
    for n, cells in enumerate(table[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            raise UserError(f"{path}: row {n}: {len(cells)} cells but the header has {len(header)} columns")
        rows.append((n, cells + [""] * (len(header) - len(cells))))
    return header, rows


def _check_header(path: Path, header: list[str]) -> None:
    for name in header:
        if name not in CSV_COLUMNS:
            raise UserError(f"{path}: unknown column {name!r} (columns: {', '.join(CSV_COLUMNS)})")
        if header.count(name) > 1:
            raise UserError(f"{path}: column {name!r} appears twice")
    for name in ("path", "labels"):
        if name not in header:
            raise UserError(f"{path}: missing column {name!r} (header: {', '.join(header)})")


def _csv_record(csv_path: Path, n: int, row: dict[str, str]) -> ImageRecord:
    where = f"{csv_path}: row {n}"
    cell = row["path"].strip()
    if not cell:
        raise UserError(f"{where}: empty path")
    image = Path(cell).expanduser()
    image = image if image.is_absolute() else csv_path.parent / image
    if not image.is_file():
        raise UserError(f"{where}: image not found: {image}")
    labels = _categories(row["labels"].split(";"))
    if not labels:
        raise UserError(f"{where}: empty labels")
    boxes = tuple(_parse_box(item, where) for item in row.get("boxes", "").split(";") if item.strip())
    for box in boxes:
        if box.category not in labels:
            raise UserError(
                f"{where}: box category {box.category!r} is not among the row's labels ({'; '.join(labels)})"
            )
    image_id = row.get("id", "").strip() or _default_id(cell)
    return ImageRecord(image_id, labels, boxes, image, f"{csv_path} row {n}")


def _parse_box(item: str, where: str) -> Box:
    """``"category x0 y0 x1 y1"`` (the category may hold spaces) as a :class:`Box`."""
    tokens = item.split()
    try:
        x0, y0, x1, y1 = (float(t) for t in tokens[-4:])
    except ValueError:
        x0 = y0 = x1 = y1 = math.nan
    if len(tokens) < 5 or not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise UserError(f"{where}: malformed box {item.strip()!r}; expected 'category x0 y0 x1 y1'")
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise UserError(f"{where}: box {item.strip()!r} needs 0 <= x0 < x1 and 0 <= y0 < y1")
    return Box(" ".join(tokens[:-4]), x0, y0, x1, y1)


def _default_id(cell: str) -> str:
    """``path`` as written, ``/``-separated, without extension and leading ``/``."""
    p = PurePosixPath(cell.replace("\\", "/"))
    if p.is_absolute():
        p = PurePosixPath(*p.parts[1:])
    return str(p.with_suffix(""))


# --------------------------------------------------------------------------- PASCAL VOC


def voc_source(
    root: str | Path,
    split: str = "val",
    include_difficult: bool = False,
    classes: Iterable[str] | None = None,
) -> list[ImageRecord]:
    """The images of one split of a PASCAL VOC tree.

    Layout: ``root/ImageSets/Main/<split>.txt`` lists image ids, one per line;
    ``root/Annotations/<id>.xml`` holds ``<object>`` elements with ``<name>``, optional
    ``<difficult>`` (0 or 1) and ``<bndbox>`` with ``<xmin> <ymin> <xmax> <ymax>``;
    ``root/JPEGImages/<id>.jpg`` is the image (it must exist; it is not opened here).

    VOC boxes are 1-based and inclusive; the records' boxes are 0-based and half-open like
    every other box here: ``(xmin - 1, ymin - 1, xmax, ymax)``. Categories are the sorted
    unique object names. Difficult objects are left out (names and boxes) unless
    ``include_difficult``, and then their boxes say ``difficult=True``. An image whose
    objects are all difficult is kept, with no categories (the planner records why it
    drops it). ``classes`` lists the known names (e.g. :data:`VOC_CLASSES`); any object,
    difficult or not, naming another class is a UserError.

    The annotations are parsed with :mod:`xml.etree.ElementTree`, which is not hardened
    against malicious XML: they are trusted local files.
    """
    root = Path(root)
    known = _known_classes(classes)
    ids = _voc_split_ids(root, split)
    records = (_voc_record(root, i, include_difficult, known, split) for i in ids)
    return _sorted_unique(records, str(root / "ImageSets" / "Main" / f"{split}.txt"))


def _known_classes(classes: Iterable[str] | None) -> frozenset[str] | None:
    if classes is None:
        return None
    names = [classes] if isinstance(classes, str) else list(classes)
    if isinstance(classes, str) or not all(isinstance(c, str) for c in names):
        raise UserError("classes: expected a list of class names")
    return frozenset(c.strip() for c in names)


def _voc_split_ids(root: Path, split: str) -> list[str]:
    if not split or "/" in split or "\\" in split:
        raise UserError(f"split: {split!r} is not a split name such as 'val'")
    file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not file.is_file():
        raise UserError(f"{file}: split file not found (is {root} a PASCAL VOC folder?)")
    ids = []
    for n, line in enumerate(file.read_text().splitlines(), start=1):
        tokens = line.split()
        if len(tokens) > 1 or any(bad in line for bad in ("/", "\\")):
            raise UserError(f"{file}: line {n}: expected one image id per line, got {line.strip()!r}")
        ids.extend(tokens)
    if not ids:
        raise UserError(f"{file}: no image ids")
    return ids


def _voc_record(
    root: Path, image_id: str, include_difficult: bool, known: frozenset[str] | None, split: str
) -> ImageRecord:
    xml = root / "Annotations" / f"{image_id}.xml"
    objects = _voc_objects(xml)
    for box in objects:
        if known is not None and box.category not in known:
            raise UserError(f"{xml}: unknown class {box.category!r}")
    kept = tuple(b for b in objects if include_difficult or not b.difficult)
    image = root / "JPEGImages" / f"{image_id}.jpg"
    if not image.is_file():
        raise UserError(f"{image}: image not found (listed in ImageSets/Main/{split}.txt)")
    return ImageRecord(image_id, _categories(b.category for b in kept), kept, image, f"PASCAL VOC {root} {split}")


def _voc_objects(xml: Path) -> list[Box]:
    """Every ``<object>`` of one annotation file, difficult ones flagged, in file order."""
    if not xml.is_file():
        raise UserError(f"{xml}: annotation not found")
    try:
        tree = ET.parse(xml)
    except ET.ParseError as e:
        raise UserError(f"{xml}: malformed XML: {e}") from None
    return [_voc_object(xml, k, obj) for k, obj in enumerate(tree.getroot().findall("object"), start=1)]


def _voc_object(xml: Path, k: int, obj: ET.Element) -> Box:
    name = " ".join((obj.findtext("name") or "").split())
    if not name:
        raise UserError(f"{xml}: object {k} has no <name>")
    difficult = (obj.findtext("difficult") or "0").strip()
    if difficult not in ("0", "1"):
        raise UserError(f"{xml}: object {k} ({name}): <difficult> is {difficult!r}, not 0 or 1")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise UserError(f"{xml}: object {k} ({name}) has no <bndbox>")
    xmin, ymin, xmax, ymax = (_voc_coordinate(xml, k, name, bndbox, t) for t in ("xmin", "ymin", "xmax", "ymax"))
    if xmax < xmin or ymax < ymin:
        raise UserError(f"{xml}: object {k} ({name}): <bndbox> has xmax < xmin or ymax < ymin")
    return Box(name, xmin - 1, ymin - 1, xmax, ymax, difficult=difficult == "1")


def _voc_coordinate(xml: Path, k: int, name: str, bndbox: ET.Element, tag: str) -> float:
    text = (bndbox.findtext(tag) or "").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UserError(f"{xml}: object {k} ({name}): <{tag}> is {text!r}, not a number")
    return value


# --------------------------------------------------------------------------- demo set


def demo_source() -> list[ImageRecord]:
    """The bundled demo set (see :mod:`stimuli.demo_set`), nothing read until loaded.

    * 12 composites ``"<left>-<right>"`` (:data:`stimuli.demo_set.PAIR_LAYOUT`), 512 px
      squares: two photos of different categories among ``cat``, ``dog`` and ``bird``,
      each category 4 times on the left and 4 times on the right; a box per half.
    * single photos: ``"chelsea"`` (``cat``), ``"coffee"`` (``espresso``) and foolbox's 20
      ImageNet photos ``"foolbox-imagenet_XX_<label>"``: a dog is ``dog``, a bird ``bird``
      (by :data:`DEMO_CATEGORIES`), any other photo is its ImageNet class name
      (``strawberry``, ``folding chair``, ...). grace-hopper is left out: its two classes
      (tie, uniform) overlap, so it would be a poor two-category item.

    Loaders build each image once (cached) and return a copy.
    """
    records = [
        _demo_photo_record("chelsea", demo_set.EGYPTIAN_CAT, "scikit-image data.chelsea (CC0)"),
        _demo_photo_record("coffee", demo_set.ESPRESSO, "scikit-image data.coffee (CC0)"),
    ]
    for file in sorted(demo_set.foolbox_folder().glob("imagenet_*.jpg")):
        label = int(file.stem.rsplit("_", 1)[1])
        records.append(_demo_photo_record(f"foolbox-{file.stem}", label, f"foolbox 3.3.4 {file.name}"))
    records.extend(_demo_composite_record(left, right) for left, right in demo_set.PAIR_LAYOUT)
    return _sorted_unique(records, "demo set")


def demo_category(label: int) -> str:
    """The demo's category of ImageNet class ``label``: a :data:`DEMO_CATEGORIES` name, or
    the class's own name."""
    for name, ranges in _demo_ranges().items():
        if label in ranges:
            return name
    from stimuli.models import imagenet_classes

    return imagenet_classes()[label]


@lru_cache(maxsize=1)
def _demo_ranges() -> dict[str, frozenset[int]]:
    return {
        name: frozenset(parse_class_spec(spec, 1000, f"DEMO_CATEGORIES.{name}"))
        for name, spec in DEMO_CATEGORIES.items()
    }


def _demo_photo_record(image_id: str, label: int, source: str) -> ImageRecord:
    loader = partial(_demo_copy, image_id)
    return ImageRecord(image_id, (demo_category(label),), source=source, loader=loader)


def _demo_composite_record(left: str, right: str) -> ImageRecord:
    image_id = f"{left}-{right}"
    halves = zip((left, right), demo_set.half_boxes(), strict=True)
    boxes = tuple(Box(demo_set.PAIR_PHOTOS[photo][0], *box) for photo, box in halves)
    categories = _categories(b.category for b in boxes)
    loader = partial(_demo_copy, image_id)
    return ImageRecord(image_id, categories, boxes, source=demo_set.pair_source(left, right), loader=loader)


def _demo_copy(image_id: str) -> Image.Image:
    """A copy of the cached demo image, so a caller's edits cannot reach the cache."""
    return _demo_image(image_id).copy()


@lru_cache(maxsize=64)
def _demo_image(image_id: str) -> Image.Image:
    """Builds one demo image by id (see :func:`demo_source`)."""
    if image_id == "chelsea":
        return demo_set.chelsea()
    if image_id == "coffee":
        return demo_set.coffee()
    if image_id.startswith("foolbox-"):
        with Image.open(demo_set.foolbox_folder() / f"{image_id.removeprefix('foolbox-')}.jpg") as im:
            return im.convert("RGB")
    left, right = image_id.split("-")
    return demo_set.pair_composite(left, right).image


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class _Param:
    """One key of a ``[source]`` table: its kind (path, str, bool, str_list)."""

    kind: str
    required: bool = False
    choices: tuple[str, ...] = ()


_PARAMS: dict[str, dict[str, _Param]] = {
    "folder": {
        "root": _Param("path", required=True),
        "labels": _Param("str", choices=("subfolders", "none")),
        "extensions": _Param("str_list"),
    },
    "csv": {"path": _Param("path", required=True)},
    "voc": {
        "root": _Param("path", required=True),
        "split": _Param("str"),
        "include_difficult": _Param("bool"),
        "classes": _Param("str_list"),
    },
    "demo": {},
}

_SOURCES: dict[str, Callable[..., list[ImageRecord]]] = {
    "folder": folder_source,
    "csv": csv_source,
    "voc": voc_source,
    "demo": demo_source,
}


def load_source(spec: Mapping[str, Any], base_dir: Path) -> list[ImageRecord]:
    """The records of a config's ``[source]`` table.

    ``type`` picks the source; the other keys are its arguments:

    * ``type = "folder"``: ``root`` (required), ``labels`` ("subfolders" | "none"),
      ``extensions`` (list of strings);
    * ``type = "csv"``: ``path`` (required);
    * ``type = "voc"``: ``root`` (required), ``split`` (string), ``include_difficult``
      (bool), ``classes`` (list of strings);
    * ``type = "demo"``: no keys.

    Relative paths are relative to ``base_dir`` (the config file's folder). A missing,
    unknown or mistyped key is a UserError ``"source.KEY: ..."``.
    """
    if not isinstance(spec, Mapping):
        raise UserError("source: expected a table with a 'type' key")
    kind = spec.get("type")
    if kind not in _SOURCES:
        shown = "missing" if kind is None else f"unknown source type {kind!r}"
        raise UserError(f"source.type: {shown}; one of {', '.join(sorted(_SOURCES))}")
    params = _PARAMS[kind]
    args = {key: _argument(kind, key, value, params, base_dir) for key, value in spec.items() if key != "type"}
    for key, param in params.items():
        if param.required and key not in args:
            raise UserError(f"source.{key}: missing (required for type '{kind}')")
    return _SOURCES[kind](**args)


def _argument(kind: str, key: str, value: Any, params: dict[str, _Param], base_dir: Path) -> Any:
    """One checked ``[source]`` value, a path made absolute against ``base_dir``."""
    if key not in params:
        allowed = ", ".join(params) or "none"
        raise UserError(f"source.{key}: unknown key for type '{kind}' (allowed: {allowed})")
    param = params[key]
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise UserError(f"source.{key}: expected true or false, got {value!r}")
        return value
    if param.kind == "str_list":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise UserError(f"source.{key}: expected a non-empty list of strings, got {value!r}")
        return value
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"source.{key}: expected a non-empty string, got {value!r}")
    if param.choices and value not in param.choices:
        raise UserError(f"source.{key}: {value!r} is not one of {', '.join(param.choices)}")
    if param.kind == "path":
        path = Path(value).expanduser()
        return path if path.is_absolute() else base_dir / path
    return value
