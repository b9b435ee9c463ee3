"""The stages' shared contract (camstudy.contracts): one definition, used by every stage."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

from camstudy import contracts as C

ROOT = Path(__file__).resolve().parents[2]


def test_enums_are_their_strings():
    assert C.TaskKind.TRUST == "trust" and f"{C.TaskKind.CLASS_DISCRIMINATION}" == "class_discrimination"
    assert json.dumps({"task": C.TaskKind.TRUST}) == '{"task": "trust"}'
    assert [str(r) for r in C.ROLES] == ["stronger", "weaker"]


def test_every_stage_uses_the_contract_not_a_copy():
    from analysis.load import KINDS
    from camstudy.kinds import KINDS as DECLARED
    from stimuli.manifest import FIELDS, JSON_FIELDS, MANIFEST_JSON, PLAN
    from stimuli.plan import CD, PHOTO, TRUST
    from study.answers import TRUST_SCALE
    from study.recruitment import MODES
    from study.settings import TASKS
    from study.setup import PHOTO as STUDY_PHOTO

    # Every task kind is a declared study kind, in the planning order (the paper's two first).
    assert TASKS == KINDS == tuple(C.TaskKind) == tuple(DECLARED) and (CD, TRUST) == tuple(C.TaskKind)[:2]
    assert MODES == tuple(C.Mode)
    assert PHOTO == STUDY_PHOTO == C.PHOTO
    assert TRUST_SCALE == C.TRUST_VALUES == (-2, -1, 0, 1, 2)
    assert FIELDS == C.MANIFEST_FIELDS and JSON_FIELDS == C.MANIFEST_JSON_FIELDS
    assert (MANIFEST_JSON, PLAN) == (C.BuildFiles.MANIFEST_JSON, C.BuildFiles.PLAN)


def test_the_page_script_retypes_no_scale():
    # The trust buttons come from the plan's `scale` (the server's TRUST_SCALE), not from
    # labels written into the script.
    js = (ROOT / "study" / "static" / "study.js").read_text(encoding="utf-8")
    assert "plan.scale.points" in js
    for p in C.TRUST_SCALE.points:
        assert p.label not in re.sub(r"^\s*//.*$", "", js, flags=re.M), p.label


def test_the_scale_is_shown_left_to_right_and_stores_every_value():
    s = C.TRUST_SCALE
    assert [p.value for p in s.points] == [2, 1, 0, -1, -2]  # Model 1 ... Model 2
    assert s.as_json()["points"][0] == {"value": 2, "label": "Model 1 much more reliable"}
    assert s.anchors[0] == s.points[0].label and s.anchors[-1] == s.points[-1].label


def test_plan_items_keep_the_plan_item_record():
    # Every key the planner writes is declared in PlanItem, and every required key is there.
    from stimuli import plan as P

    declared = set(typing.get_type_hints(C.PlanItem))
    source = Path(P.__file__).read_text(encoding="utf-8")
    written = set(re.findall(r'^\s+"([a-z_]+)": ', source, flags=re.M))
    assert written - {"items", "decisions", "explanations", "photos", "image_id", "categories"} <= declared
    assert {"item_id", "task", "image_id", "category", "method", "stimulus_ids", "is_attention_check"} == set(
        C.PlanItem.__required_keys__
    )
