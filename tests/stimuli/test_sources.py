"""Image sources: folder, CSV, PASCAL VOC, the bundled demo set, and the config dispatch."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from camstudy.errors import UserError
from stimuli import demo_set
from stimuli.records import Box, CategoryMap
from stimuli.sources import (
    DEMO_CATEGORIES,
    VOC_CLASSES,
    csv_source,
    demo_source,
    folder_source,
    load_source,
    voc_source,
)


def make_image(path: Path, size: tuple[int, int] = (8, 6), color: str = "red") -> Path:
    """A tiny image file; the format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def raises(message: str):
    """``pytest.raises(UserError)`` whose message contains ``message`` literally."""
    return pytest.raises(UserError, match=re.escape(message))


# --------------------------------------------------------------------------- folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    make_image(root / "cat" / "a.jpg")
    make_image(root / "cat" / "sub" / "b.png", size=(5, 4))
    make_image(root / "dog" / "c.jpeg")
    make_image(root / "dog" / "D.JPG")
    make_image(root / "dog" / ".hidden.jpg")
    make_image(root / ".cache" / "x.jpg")
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_folder_subfolders_are_categories(image_folder: Path):
    records = folder_source(image_folder)
    assert [r.id for r in records] == ["cat/a", "cat/sub/b", "dog/D", "dog/c"]
    assert [r.categories for r in records] == [("cat",), ("cat",), ("dog",), ("dog",)]
    assert records[1].path == image_folder / "cat" / "sub" / "b.png"
    assert records[0].boxes == ()
    image = records[1].load()
    assert image.mode == "RGB" and image.size == (5, 4)


def test_folder_without_labels_takes_root_files_too(image_folder: Path):
    make_image(image_folder / "top.png")
    records = folder_source(image_folder, labels="none", extensions=["png", ".JPG"])
    assert [r.id for r in records] == ["cat/a", "cat/sub/b", "dog/D", "top"]
    assert all(r.categories == () for r in records)


def test_folder_errors(tmp_path: Path, image_folder: Path):
    with raises("image folder not found"):
        folder_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    make_image(tmp_path / "empty" / ".hidden.png")
    with raises("no images"):
        folder_source(tmp_path / "empty")
    with raises("labels: 'folders' is neither 'subfolders' nor 'none'"):
        folder_source(image_folder, labels="folders")
    make_image(image_folder / "cat" / "a.png")
    with raises("duplicate image id 'cat/a'"):
        folder_source(image_folder)


def test_folder_file_outside_category_folder(tmp_path: Path):
    make_image(tmp_path / "cat" / "a.jpg")
    make_image(tmp_path / "loose.jpg")
    with raises("loose.jpg lies outside any category subfolder"):
        folder_source(tmp_path)


# --------------------------------------------------------------------------- CSV


def write_csv(folder: Path, text: str, name: str = "images.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def csv_images(tmp_path: Path) -> Path:
    make_image(tmp_path / "imgs" / "pair.jpg", size=(320, 240))
    make_image(tmp_path / "imgs" / "single.png")
    return tmp_path


def test_csv_happy_path(csv_images: Path, tmp_path_factory: pytest.TempPathFactory):
    elsewhere = make_image(tmp_path_factory.mktemp("abs") / "far.png")
    path = write_csv(
        csv_images,
        "Path,labels,boxes,id\n"
        'imgs/pair.jpg,dog; cat,"cat 10 20 110 200; dog 200 20 300.5 200",\n'
        "imgs/single.png,folding  chair,folding chair 0 0 4 4,solo\n"
        ",,,\n"
        f"{elsewhere},cat;cat,,\n",
    )
    records = csv_source(path)
    far_id = str(elsewhere.with_suffix("")).lstrip("/")  # absolute path: no leading "/"
    assert [r.id for r in records] == sorted([far_id, "imgs/pair", "solo"])
    far, pair, solo = (next(r for r in records if r.id == i) for i in (far_id, "imgs/pair", "solo"))
    assert far.categories == ("cat",) and far.path == elsewhere
    assert pair.categories == ("cat", "dog")
    assert pair.boxes == (Box("cat", 10, 20, 110, 200), Box("dog", 200, 20, 300.5, 200))
    assert pair.path == csv_images / "imgs" / "pair.jpg"
    assert pair.source.endswith("images.csv row 2")
    assert solo.categories == ("folding chair",) and solo.boxes[0].category == "folding chair"
    assert pair.load().size == (320, 240)


def test_csv_without_optional_columns(csv_images: Path):
    path = write_csv(csv_images, "labels,path\ncat,imgs/single.png\n")
    (record,) = csv_source(path)
    assert record.id == "imgs/single" and record.boxes == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,boxes\nimgs/single.png,\n", "missing column 'labels'"),
        ("labels\ncat\n", "missing column 'path'"),
        ("path,labels,box\nimgs/single.png,cat,\n", "unknown column 'box'"),
        ("path,labels,labels\nimgs/single.png,cat,cat\n", "column 'labels' appears twice"),
        ("", "empty file"),
        ("path,labels\n\n", "no image rows"),
        ("path,labels\nimgs/single.png, ; \n", "row 2: empty labels"),
        ("path,labels\n,cat\n", "row 2: empty path"),
        ("path,labels\nimgs/single.png,cat,extra\n", "row 2: 3 cells but the header has 2 columns"),
        ("path,labels\nimgs/single.png,cat\nimgs/nope.png,cat\n", "row 3: image not found: "),
        ("path,labels,boxes\nimgs/single.png,cat,cat 1 2 x 4\n", "row 2: malformed box 'cat 1 2 x 4'"),
        ("path,labels,boxes\nimgs/single.png,cat,1 2 3 4\n", "row 2: malformed box '1 2 3 4'"),
        ("path,labels,boxes\nimgs/single.png,cat,cat 1 2 3\n", "row 2: malformed box 'cat 1 2 3'"),
        ("path,labels,boxes\nimgs/single.png,cat,cat 5 2 3 4\n", "row 2: box 'cat 5 2 3 4' needs 0 <= x0 < x1"),
        (
            "path,labels,boxes\nimgs/single.png,cat,cat 1 2 3 4; dog 1 2 3 4\n",
            "row 2: box category 'dog' is not among the row's labels (cat)",
        ),
        (
            "path,labels,id\nimgs/single.png,cat,x\nimgs/pair.jpg,dog,x\n",
            "duplicate image id 'x' (",
        ),
    ],
)
def test_csv_errors(csv_images: Path, text: str, message: str):
    path = write_csv(csv_images, text)
    with raises(message) as info:
        csv_source(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_csv_missing_file(tmp_path: Path):
    with raises("CSV file not found"):
        csv_source(tmp_path / "nope.csv")


def test_csv_not_found_names_the_resolved_image(csv_images: Path):
    path = write_csv(csv_images, "path,labels\nimgs/nope.png,cat\n")
    with raises(f"images.csv: row 2: image not found: {csv_images / 'imgs' / 'nope.png'}"):
        csv_source(path)


# --------------------------------------------------------------------------- PASCAL VOC


def voc_object(name: str, box: tuple[int, int, int, int], difficult: int | None = 0) -> str:
    tag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    coords = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    return f"<object><name>{name}</name><pose>Left</pose>{tag}<bndbox>{coords}</bndbox></object>"


def write_annotation(root: Path, image_id: str, *objects: str) -> Path:
    path = root / "Annotations" / f"{image_id}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{image_id}.jpg</filename>{''.join(objects)}</annotation>")
    return path


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """Three annotated images: cat+dog, person + a difficult chair, only a difficult bird."""
    root = tmp_path / "VOC2007"
    write_annotation(root, "000001", voc_object("dog", (50, 1, 60, 30)), voc_object("cat", (1, 2, 10, 20), None))
    write_annotation(root, "000002", voc_object("person", (3, 4, 5, 6)), voc_object("chair", (7, 8, 9, 10), 1))
    write_annotation(root, "000003", voc_object("bird", (2, 2, 4, 4), 1))
    for image_id in ("000001", "000002", "000003"):
        make_image(root / "JPEGImages" / f"{image_id}.jpg", size=(64, 32))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("000002\n000001\n\n000003\n")
    return root


def test_voc_two_categories_and_boxes(voc_root: Path):
    records = voc_source(voc_root, classes=VOC_CLASSES)
    assert [r.id for r in records] == ["000001", "000002", "000003"]
    pair, person, bird = records
    assert pair.categories == ("cat", "dog")
    # VOC's 1-based inclusive boxes become 0-based half-open ones, in file order.
    assert pair.boxes == (Box("dog", 49, 0, 60, 30), Box("cat", 0, 1, 10, 20))
    assert person.categories == ("person",) and len(person.boxes) == 1
    assert bird.categories == () and bird.boxes == ()
    assert pair.path == voc_root / "JPEGImages" / "000001.jpg"
    assert pair.load().size == (64, 32)


def test_voc_include_difficult(voc_root: Path):
    records = {r.id: r for r in voc_source(voc_root, include_difficult=True)}
    assert records["000002"].categories == ("chair", "person")
    assert records["000002"].boxes == (Box("person", 2, 3, 5, 6), Box("chair", 6, 7, 9, 10, difficult=True))
    assert records["000003"].categories == ("bird",)


def test_voc_unknown_class(voc_root: Path):
    write_annotation(voc_root, "000001", voc_object("foo", (1, 1, 2, 2)))
    with raises("Annotations/000001.xml: unknown class 'foo'"):
        voc_source(voc_root, classes=VOC_CLASSES)
    assert voc_source(voc_root)[0].categories == ("foo",)  # no class list, no check


def test_voc_unknown_class_even_when_difficult(voc_root: Path):
    with raises("Annotations/000002.xml: unknown class 'chair'"):
        voc_source(voc_root, classes=["person", "cat", "dog", "bird"])


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ("<annotation><object><name>cat</name>", "Annotations/000001.xml: malformed XML"),
        ("<annotation><object><bndbox/></object></annotation>", "Annotations/000001.xml: object 1 has no <name>"),
        ("<annotation><object><name>cat</name></object></annotation>", "object 1 (cat) has no <bndbox>"),
        (
            "<annotation>" + voc_object("cat", (1, 1, 2, 2)).replace("<xmax>2", "<xmax>two") + "</annotation>",
            "object 1 (cat): <xmax> is 'two', not a number",
        ),
        (
            "<annotation>" + voc_object("cat", (5, 1, 2, 2)) + "</annotation>",
            "object 1 (cat): <bndbox> has xmax < xmin",
        ),
        ("<annotation>" + voc_object("cat", (1, 1, 2, 2), 2) + "</annotation>", "<difficult> is '2', not 0 or 1"),
    ],
)
def test_voc_bad_annotation(voc_root: Path, annotation: str, message: str):
    (voc_root / "Annotations" / "000001.xml").write_text(annotation)
    with raises(message):
        voc_source(voc_root)


def test_voc_missing_files(voc_root: Path):
    with raises("ImageSets/Main/test.txt: split file not found"):
        voc_source(voc_root, split="test")
    (voc_root / "JPEGImages" / "000003.jpg").unlink()
    with raises("JPEGImages/000003.jpg: image not found"):
        voc_source(voc_root)
    (voc_root / "Annotations" / "000002.xml").unlink()
    with raises("Annotations/000002.xml: annotation not found"):
        voc_source(voc_root)


def test_voc_bad_split_file(voc_root: Path):
    main = voc_root / "ImageSets" / "Main"
    (main / "cat_val.txt").write_text("000001  1\n")
    with raises("cat_val.txt: line 1: expected one image id per line"):
        voc_source(voc_root, split="cat_val")
    (main / "twice.txt").write_text("000001\n000001\n")
    with raises("duplicate image id '000001'"):
        voc_source(voc_root, split="twice")
    with raises("classes: expected a list of class names"):
        voc_source(voc_root, classes="cat")


# --------------------------------------------------------------------------- demo set


@pytest.fixture(scope="module")
def demo() -> list:
    return demo_source()


def test_demo_ids_unique_sorted_and_stable(demo):
    ids = [r.id for r in demo]
    assert ids == sorted(set(ids))
    again = demo_source()
    assert again == demo  # loaders are not compared; everything else is
    assert [r.source for r in again] == [r.source for r in demo]


def test_demo_composites_balance_cat_dog_bird(demo):
    composites = [r for r in demo if len(r.categories) == 2]
    assert len(composites) == len(demo_set.PAIR_LAYOUT) == 12
    left, right, pairs = Counter(), Counter(), Counter()
    for r in composites:
        assert r.path is None and r.loader is not None
        assert len(r.boxes) == 2 and r.categories == tuple(sorted(b.category for b in r.boxes))
        first, second = sorted(r.boxes, key=lambda b: b.x0)
        left[first.category] += 1
        right[second.category] += 1
        pairs[first.category, second.category] += 1
    assert left == right == {"cat": 4, "dog": 4, "bird": 4}
    assert len(pairs) == 6 and set(pairs.values()) == {2}  # every ordered pair, twice


def test_demo_composites_load_with_boxes_inside(demo):
    for r in demo:
        if not r.boxes:
            continue
        image = r.load()
        assert image.mode == "RGB" and image.size == (demo_set.COMPOSITE_SIZE,) * 2
        for b in r.boxes:
            assert 0 <= b.x0 < b.x1 <= image.width and 0 <= b.y0 < b.y1 <= image.height
        assert {b.as_tuple() for b in r.boxes} == set(demo_set.half_boxes())


def test_demo_composites_match_demo_set(demo):
    by_id = {r.id: r for r in demo}
    for item in demo_set.composites():
        record = by_id[item.id]
        assert record.load().tobytes() == item.image.tobytes()
        assert sorted(b.as_tuple() for b in record.boxes) == sorted(item.boxes.values())


def test_demo_single_photos(demo):
    singles = {r.id: r for r in demo if len(r.categories) == 1}
    assert len(singles) == 22  # chelsea, coffee, foolbox's 20
    assert singles["chelsea"].categories == ("cat",)
    assert singles["foolbox-imagenet_00_243"].categories == ("dog",)
    assert singles["foolbox-imagenet_17_22"].categories == ("bird",)
    assert singles["foolbox-imagenet_04_949"].categories == ("strawberry",)
    assert "grace-hopper" not in {r.id for r in demo}
    counts = Counter(r.categories[0] for r in singles.values())
    assert (counts["cat"], counts["dog"], counts["bird"]) == (1, 2, 3)
    image = singles["foolbox-imagenet_04_949"].load()
    assert image.mode == "RGB" and image.size == (512, 512)


def test_demo_loader_is_cached_and_returns_copies(demo):
    record = next(r for r in demo if r.id == "cat-mastiff")
    first = record.load()
    first.paste((0, 0, 0), (0, 0, 512, 512))
    second = record.load()
    assert second is not first and second.getpixel((10, 10)) != (0, 0, 0)


def test_demo_categories_cover_the_demo_classes(demo):
    from stimuli.models import imagenet_classes

    cmap = CategoryMap(imagenet_classes(), DEMO_CATEGORIES)
    assert len(cmap.classes("cat")) == 5 and len(cmap.classes("dog")) == 118
    for category, label in demo_set.PAIR_PHOTOS.values():
        assert label in cmap.classes(category)
    for category in {c for r in demo for c in r.categories}:
        assert cmap.classes(category) is not None, category


# --------------------------------------------------------------------------- load_source


def test_load_source_dispatches(tmp_path: Path, image_folder: Path, csv_images: Path, voc_root: Path):
    assert len(load_source({"type": "folder", "root": "images"}, image_folder.parent)) == 4
    folder = load_source({"type": "folder", "root": "images", "labels": "none", "extensions": ["png"]}, tmp_path)
    assert [r.id for r in folder] == ["cat/sub/b"]
    write_csv(csv_images, "path,labels\nimgs/single.png,cat\n")
    assert [r.id for r in load_source({"type": "csv", "path": "images.csv"}, csv_images)] == ["imgs/single"]
    voc = load_source(
        {"type": "voc", "root": str(voc_root), "split": "val", "include_difficult": True, "classes": list(VOC_CLASSES)},
        Path("/nowhere"),
    )
    assert voc[2].categories == ("bird",)


def test_load_source_demo():
    assert [r.id for r in load_source({"type": "demo"}, Path("."))][:2] == ["cat-dalmatian", "cat-eagle"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "source.type: missing; one of csv, demo, folder, voc"),
        ({"type": "imagenet"}, "source.type: unknown source type 'imagenet'"),
        ({"type": "folder"}, "source.root: missing (required for type 'folder')"),
        ({"type": "folder", "root": "x", "label": "none"}, "source.label: unknown key for type 'folder'"),
        ({"type": "demo", "root": "x"}, "source.root: unknown key for type 'demo' (allowed: none)"),
        ({"type": "folder", "root": "x", "labels": "dirs"}, "source.labels: 'dirs' is not one of subfolders, none"),
        ({"type": "folder", "root": 3}, "source.root: expected a non-empty string, got 3"),
        ({"type": "folder", "root": "x", "extensions": "jpg"}, "source.extensions: expected a non-empty list"),
        ({"type": "voc", "root": "x", "include_difficult": "yes"}, "source.include_difficult: expected true or false"),
        ({"type": "voc", "root": "x", "classes": []}, "source.classes: expected a non-empty list of strings"),
        ({"type": "csv", "path": "missing.csv"}, "missing.csv: CSV file not found"),
        (["folder"], "source: expected a table"),
    ],
)
def test_load_source_errors(tmp_path: Path, spec, message: str):
    with raises(message):
        load_source(spec, tmp_path)
