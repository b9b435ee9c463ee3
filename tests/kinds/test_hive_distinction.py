"""HIVE distinction as a declared kind: its plan over hand-made predictions, its layouts,
its scoring and its bots (no model, no server). The build and the served study are tested
in tests/stimuli/test_hive_build.py and tests/e2e."""

import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from bots.database import Truth
from bots.profiles import PROFILES
from camstudy.errors import UserError
from camstudy.kinds import HIVE_DISTINCTION, KINDS, AnswerRejected, Outcome, kind_of
from stimuli.config import parse_config
from stimuli.plan import PHOTO, Prediction, plan_trials
from stimuli.records import CategoryMap, ImageRecord

CLASSES = ["cat", "dog", "bird", "car", "tabby", "crane", "crane"]  # ImageNet repeats "crane"
MAPS = {role: CategoryMap(CLASSES, {"cat": [0, 4]}) for role in ("stronger", "weaker")}


def cfg(**task):
    raw = {
        "seed": 7,
        "methods": ["gradcam", "guided_gradcam"],
        "models": {"stronger": {"name": "a"}, "weaker": {"name": "b"}},
        "source": {"type": "demo"},
        "tasks": {"hive_distinction": task or {"attention_checks": 2}},
    }
    return parse_config(raw, Path("/tmp/c.toml"))


def pred(*ranked):
    p = [0.5, 0.2, 0.15, 0.1, 0.05]
    return Prediction(top5=tuple(zip(ranked, p, strict=False)), best_class={})


RECORDS = [
    ImageRecord(id="a", categories=("cat",)),
    ImageRecord(id="b", categories=("dog",)),
    ImageRecord(id="c", categories=("bird",)),
    ImageRecord(id="d", categories=()),  # nothing labelled: dropped
    ImageRecord(id="e", categories=("car",)),  # the weaker model's top-4 repeats "crane": dropped
]
PREDS = {
    "stronger": {
        "a": pred(4, 0, 1, 2, 3),
        "b": pred(1, 0, 2, 3, 4),
        "c": pred(0, 2, 1, 3),
        "d": pred(0, 1, 2, 3),
        "e": pred(3, 2, 1, 0),
    },
    "weaker": {
        "a": pred(0, 4, 3, 2),
        "b": pred(2, 1, 0, 3),
        "c": pred(2, 0, 1, 3),
        "d": pred(0, 1, 2, 3),
        "e": pred(5, 6, 3, 2),
    },
}


def test_the_kind_is_registered_with_its_contract():
    kind = kind_of("hive_distinction")
    assert kind is HIVE_DISTINCTION and list(KINDS)[-1] == "hive_distinction"  # planned last: old plans keep
    assert kind.display.images == 4 and kind.arrangements == 4
    assert kind.analysis.outcome is Outcome.ACCURACY and kind.analysis.chance == 0.25
    with pytest.raises(KeyError, match="unknown study kind 'nope'"):
        kind_of("nope")


def test_plan_explains_each_models_own_top_four_and_asks_for_its_prediction():
    plan = plan_trials(cfg(), RECORDS, PREDS, MAPS)
    decisions = {d["image_id"]: d for d in plan.decisions}
    assert decisions["d"]["hive_distinction"] == "no labelled category"
    assert "repeat a name" in decisions["e"]["hive_distinction"]
    assert {decisions[i]["hive_distinction"] for i in "abc"} == {"kept"}
    assert decisions["a"]["class_discrimination"] == "task not planned"
    items = [it for it in plan.items if not it["is_attention_check"]]
    assert len(items) == 3 * 2 * 2  # images x methods x models
    for it in items:
        role, image = it["model_role"], it["image_id"]
        top4 = [CLASSES[c] for c, _ in PREDS[role][image].top5[:4]]
        assert it["options"] == top4 and it["correct_answer"] == top4[0]
        assert it["stimulus_ids"] == [f"{image}__{role}__{it['method']}__top{k}" for k in range(1, 5)]
    assert plan.explanations == {i: ["top1", "top2", "top3", "top4"] for i in "abc"}


def test_attention_checks_show_the_photo_with_three_absurd_names():
    plan = plan_trials(cfg(attention_checks=3), RECORDS, PREDS, MAPS)
    checks = [it for it in plan.items if it["is_attention_check"]]
    assert len(checks) == 3
    for it in checks:
        assert it["method"] == PHOTO and it["stimulus_ids"] == [f"{it['image_id']}__photo"] * 4
        assert it["correct_answer"] in it["options"] and len(set(it["options"])) == 4
        assert not {"cat", "dog", "bird", "car"} & (set(it["options"]) - {it["correct_answer"]})
    assert set(plan.photos) == {it["image_id"] for it in checks}


def test_max_images_and_bad_config():
    plan = plan_trials(cfg(max_images=2, attention_checks=0), RECORDS, PREDS, MAPS)
    kept = [d for d in plan.decisions if d["hive_distinction"] == "kept"]
    assert len(kept) == 2 and sum("over max_images" in d["hive_distinction"] for d in plan.decisions) == 1
    with pytest.raises(UserError, match="tasks.hive_distinction.absurd_categories: must be a list of at least 3"):
        cfg(absurd_categories=["pizza"])
    with pytest.raises(UserError, match="tasks.hive_distinction.baseline: unknown key"):
        cfg(baseline=True)


def item(**kw):
    return SimpleNamespace(
        options=["tabby", "cat", "dog", "bird"], stimulus_ids=["s1", "s2", "s3", "s4"], correct_answer="tabby", **kw
    )


def test_the_four_arrangements_put_the_answer_in_each_place_once():
    kind = kind_of("hive_distinction")
    places = Counter()
    for k in range(kind.arrangements):
        layout = kind.layout(item(), k)
        # The images and their names move together.
        assert dict(zip(layout["stimuli"], layout["options"], strict=True)) == dict(
            zip(["s1", "s2", "s3", "s4"], ["tabby", "cat", "dog", "bird"], strict=True)
        )
        places[layout["options"].index("tabby")] += 1
    assert places == {0: 1, 1: 1, 2: 1, 3: 1}


def test_scoring():
    kind = kind_of("hive_distinction")
    layout = kind.layout(item(), 2)
    flags = {"is_attention_check": False, "correct_answer": "tabby", "expected_answer": None}
    assert kind.score(layout, "tabby", **flags).correct is True
    assert kind.score(layout, "dog", **flags).correct is False
    for bad in ("car", 1, None, ["tabby"]):
        with pytest.raises(AnswerRejected, match="one of the trial's options"):
            kind.score(layout, bad, **flags)


@pytest.mark.parametrize(
    ("profile", "method", "expected"),
    [("paper", "gradcam", 0.55), ("paper", "guided_backprop", 0.35), ("careless", "gradcam", 0.25)],
)
def test_bots_answer_at_their_profiles_accuracy(profile, method, expected):
    kind = kind_of("hive_distinction")
    trial = {"options": ["tabby", "cat", "dog", "bird"]}
    truth = Truth(method=method, attention_check=False, correct="cat", stronger_first=None)
    draw = random.Random(5)
    n = 20_000
    right = sum(kind.bot_answer(trial, truth, PROFILES[profile], draw) == "cat" for _ in range(n))
    assert abs(right / n - expected) < 0.015
    rng = random.Random(6)
    chance = sum(kind.random_answer(trial, rng) == "cat" for _ in range(n)) / n
    assert abs(chance - 0.25) < 0.015
