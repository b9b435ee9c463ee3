"""Trial planning on hand-made records and predictions (no model needed)."""

from collections import Counter
from pathlib import Path

from stimuli.config import parse_config
from stimuli.plan import PHOTO, Prediction, plan_trials
from stimuli.records import CategoryMap, ImageRecord

CLASSES = ["cat", "dog", "bird", "car", "tabby"]  # a toy 5-class model
MAPS = {role: CategoryMap(CLASSES, {"cat": [0, 4]}) for role in ("stronger", "weaker")}


def cfg(**tasks):
    raw = {
        "seed": 7,
        "methods": ["gradcam", "guided_gradcam"],
        "models": {"stronger": {"name": "a"}, "weaker": {"name": "b"}},
        "source": {"type": "demo"},
        "tasks": tasks
        or {"class_discrimination": {"attention_checks": 3}, "trust": {"attention_checks": 2, "baseline": True}},
    }
    return parse_config(raw, Path("/tmp/c.toml"))


def rec(id, *cats):
    return ImageRecord(id=id, categories=tuple(sorted(cats)))


def pred(top1, **best):
    return Prediction(top5=((top1, 0.9),), best_class=best)


RECORDS = [
    rec("a", "cat", "dog"),
    rec("b", "dog", "bird"),
    rec("c", "cat", "bird"),
    rec("d", "cat", "dog"),
    rec("e", "cat"),
    rec("f", "dog"),
    rec("g", "person"),
    rec("h", "cat", "dog", "bird"),
]
PREDS = {
    "stronger": {r.id: pred(4 if "cat" in r.categories else 1) for r in RECORDS},
    "weaker": {r.id: pred(0 if "cat" in r.categories else 1) for r in RECORDS} | {"f": pred(3)},
}


def test_class_discrimination_items_follow_the_paper():
    plan = plan_trials(cfg(), RECORDS, PREDS, MAPS)
    cd = [it for it in plan.items if it["task"] == "class_discrimination" and not it["is_attention_check"]]
    images = {it["image_id"] for it in cd}
    # Two-category images only, balanced: b (dog|bird), c (cat|bird) and one of the two
    # cat|dog images give cat, dog and bird twice each; the other cat|dog image is dropped.
    assert {"b", "c"} <= images and len(images & {"a", "d"}) == 1 and len(images) == 3
    decisions = {d["image_id"]: d for d in plan.decisions}
    dropped = ({"a", "d"} - images).pop()
    assert decisions[dropped]["class_discrimination"].startswith("dropped to balance categories")
    assert decisions["e"]["class_discrimination"] == "has 1 categories; needs exactly 2"
    assert decisions["h"]["class_discrimination"] == "has 3 categories; needs exactly 2"
    # One visualization per (image, category, method, model), options = the two categories.
    assert len(cd) == 3 * 2 * 2 * 2
    per = Counter((it["method"], it["model_role"]) for it in cd)
    assert set(per.values()) == {6}
    cats = Counter(it["category"] for it in cd)
    assert set(cats.values()) == {8}
    for it in cd:
        assert it["correct_answer"] in it["options"] and len(it["options"]) == 2
        assert it["stimulus_ids"] == [f"{it['image_id']}__{it['model_role']}__{it['method']}__{it['category']}"]


def test_attention_checks_and_photos():
    plan = plan_trials(cfg(), RECORDS, PREDS, MAPS)
    checks = [it for it in plan.items if it["task"] == "class_discrimination" and it["is_attention_check"]]
    assert len(checks) == 3
    for it in checks:
        assert it["method"] == PHOTO and it["correct_answer"] in it["options"]
        absurd = [o for o in it["options"] if o != it["correct_answer"]][0]
        assert absurd not in ("cat", "dog", "bird")
        assert it["image_id"] in plan.photos
    trust_checks = [it for it in plan.items if it["task"] == "trust" and it["is_attention_check"]]
    assert len(trust_checks) == 2
    for it in trust_checks:
        assert it["stimulus_ids"][0] == it["stimulus_ids"][1] and it["expected_answer"] == 0


def test_trust_keeps_images_both_models_get_right():
    plan = plan_trials(cfg(), RECORDS, PREDS, MAPS)
    decisions = {d["image_id"]: d for d in plan.decisions}
    trust = [it for it in plan.items if it["task"] == "trust" and not it["is_attention_check"]]
    kept = {it["image_id"] for it in trust}
    assert "e" in kept  # tabby (stronger) and cat (weaker) both fall in category "cat"
    assert "f" not in kept and "the weaker model predicts 'car'" in decisions["f"]["trust"]
    assert decisions["g"]["trust"] == "category 'person' has no class in the stronger model"
    methods = Counter(it["method"] for it in trust)
    assert methods["gradcam"] == methods["guided_gradcam"] == methods[PHOTO] == len(kept)
    for it in trust:
        if it["method"] != PHOTO:
            s, w = it["stimulus_ids"]
            assert s.split("__")[1] == "stronger" and w.split("__")[1] == "weaker"


def test_plan_is_deterministic_and_explains_what_items_use():
    a = plan_trials(cfg(), RECORDS, PREDS, MAPS)
    b = plan_trials(cfg(), list(reversed(RECORDS)), PREDS, MAPS)
    assert a.to_json() == b.to_json()
    needed = set(a.stimulus_ids(("gradcam", "guided_gradcam")))
    used = {s for it in a.items for s in it["stimulus_ids"]}
    assert used <= needed


def test_max_images():
    plan = plan_trials(cfg(trust={"max_images": 1}), RECORDS, PREDS, MAPS)
    kept = {it["image_id"] for it in plan.items}
    assert len(kept) == 1
    assert sum(d["trust"].startswith("over max_images") for d in plan.decisions) >= 1
