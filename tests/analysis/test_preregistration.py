"""Pre-registration (analysis.preregistration): the plan's validation, the canonical frozen
JSON and its sha256, and the report hook: confirmatory tables, hypotheses judged on simulated
studies, and every kind of deviation from the plan."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from analysis.power import n_per_group_two_proportions, n_trust_one_sample
from analysis.preregistration import (
    StudyFacts,
    evaluate,
    freeze,
    load_frozen,
    parse_plan,
    parse_plan_text,
    preregistration_hook,
    verify_stored,
)
from analysis.report import analyze
from analysis.significance import report_tables
from analysis.simulate import simulate_class_discrimination, simulate_trust
from camstudy import examples
from camstudy.errors import UserError

WHEN = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
CD_METHODS = ("gradcam", "guided_backprop", "guided_gradcam")
CD_FACTS = StudyFacts("sim-cd", "class_discrimination", CD_METHODS, "between", CD_METHODS)
TRUST_FACTS = StudyFacts("sim-trust", "trust", ("gradcam", "guided_backprop", "guided_gradcam"), "within", ("all",))

CD_PLAN = """
alpha = 0.05
[study]
slug = "sim-cd"
[[hypotheses]]
id = "H1"
text = "Guided Grad-CAM is above chance."
test = "accuracy_vs_chance"
method = "guided_gradcam"
direction = "greater"
[[hypotheses]]
id = "H2"
text = "Guided Grad-CAM is below chance (false)."
test = "accuracy_vs_chance"
method = "guided_gradcam"
direction = "less"
[[hypotheses]]
id = "H3"
text = "Guided Grad-CAM beats Guided Backpropagation."
test = "gee_comparison"
method = "guided_gradcam"
versus = "guided_backprop"
direction = "greater"
[[hypotheses]]
id = "H4"
text = "Grad-CAM beats Guided Grad-CAM (false: they are equal)."
test = "gee_comparison"
method = "gradcam"
versus = "guided_gradcam"
direction = "greater"
[exclusions]
max_failed_attention_checks = 0
min_median_rt_ms = 300
require_complete = true
"""

# The same plan, every table's keys in another order and the top-level tables moved.
CD_PLAN_REORDERED = """
[exclusions]
require_complete = true
min_median_rt_ms = 300
max_failed_attention_checks = 0
[[hypotheses]]
direction = "greater"
method = "guided_gradcam"
test = "accuracy_vs_chance"
text = "Guided Grad-CAM is above chance."
id = "H1"
[[hypotheses]]
method = "guided_gradcam"
id = "H2"
direction = "less"
text = "Guided Grad-CAM is below chance (false)."
test = "accuracy_vs_chance"
[[hypotheses]]
versus = "guided_backprop"
direction = "greater"
id = "H3"
method = "guided_gradcam"
text = "Guided Grad-CAM beats Guided Backpropagation."
test = "gee_comparison"
[[hypotheses]]
direction = "greater"
test = "gee_comparison"
text = "Grad-CAM beats Guided Grad-CAM (false: they are equal)."
versus = "guided_gradcam"
method = "gradcam"
id = "H4"
[study]
slug = "sim-cd"
"""

TRUST_PLAN = """
alpha = 0.05
[[hypotheses]]
id = "T1"
text = "Workers trust the stronger model more under Guided Grad-CAM."
test = "trust_mean"
method = "guided_gradcam"
direction = "greater"
[[hypotheses]]
id = "T2"
text = "Guided Grad-CAM earns more trust than Guided Backpropagation (ordinal model)."
test = "ordinal_method"
method = "guided_gradcam"
versus = "guided_backprop"
direction = "greater"
[[hypotheses]]
id = "T3"
text = "Grad-CAM vs Guided Grad-CAM: neither is the model's reference."
test = "ordinal_method"
method = "gradcam"
versus = "guided_gradcam"
[power]
mean = 0.5
sd = 0.8
"""


@pytest.fixture(scope="module")
def cd_run(tmp_path_factory):
    """A simulated between-subjects study (Guided Grad-CAM 0.8 = Grad-CAM, Guided Backprop
    0.5; some fast workers), analysed with the GEE hook and the frozen CD_PLAN."""
    df = simulate_class_discrimination(
        48, 12, {"guided_backprop": 0.5, "guided_gradcam": 0.8, "gradcam": 0.8}, seed=3, fast_rate=0.125, study="sim-cd"
    )
    frozen = freeze(parse_plan_text(CD_PLAN, "cd.toml", CD_FACTS), None, frozen_at=WHEN)
    out = tmp_path_factory.mktemp("cd-prereg")
    result = analyze(
        df,
        frozen.plan["exclusions"],
        out,
        title="t",
        source="s",
        significance=report_tables,
        preregistration=preregistration_hook(frozen, answers=df, mode="live"),
        n_boot=20,
    )
    return df, frozen, result


@pytest.fixture(scope="module")
def trust_run(tmp_path_factory):
    df = simulate_trust(
        40, 12, {"guided_backprop": 0.2, "guided_gradcam": 1.0, "gradcam": 0.6}, seed=5, study="sim-trust"
    )
    frozen = freeze(parse_plan_text(TRUST_PLAN, "trust.toml", TRUST_FACTS), None, frozen_at=WHEN)
    result = analyze(
        df,
        None,
        tmp_path_factory.mktemp("trust-prereg"),
        title="t",
        source="s",
        significance=report_tables,
        preregistration=preregistration_hook(frozen),
        n_boot=20,
    )
    return df, frozen, result


def context(result: dict, **changes) -> dict:
    """The hook's context of an analyze result (what analyze passes), with changes."""
    ctx = {
        "kind": result["kind"],
        "flow": dict(result["flow"]),
        "rules": dict(result["rules"]),
        "tables": dict(result["tables"]),
    }
    ctx.update(changes)
    return ctx


def kinds(answer: dict) -> list[str]:
    return [r["kind"] for r in answer["deviation_records"]]


# --- the plan ----------------------------------------------------------------------------


def test_the_shipped_example_plan_is_valid_and_plans_n_from_the_power_analysis():
    facts = StudyFacts("class-discrimination", "class_discrimination", CD_METHODS, "between", CD_METHODS)
    with examples.path("class-discrimination.toml") as study_cfg:
        assert 'slug = "class-discrimination"' in study_cfg.read_text()
    from importlib import resources

    with resources.as_file(resources.files("camstudy.examples") / "preregistration.toml") as path:
        plan = parse_plan(path, facts)
    assert [h["id"] for h in plan["hypotheses"]] == ["H1", "H2", "H3"]
    assert plan["study"] == "class-discrimination" and plan["kind"] == "class_discrimination"
    frozen = freeze(plan, None, frozen_at=WHEN)
    expected = n_per_group_two_proportions(0.61, 0.44, 0.05, 0.8, 12, 0.05).workers_per_group * 3
    assert frozen.planned_n == expected
    assert frozen.document["derived"]["power"]["workers_per_group"] * 3 == expected
    assert frozen.plan["power"]["groups"] == 3 and frozen.plan["exclusions_source"] == "plan"


def test_power_groups_default_to_the_design_and_trust_plans_workers():
    body = CD_PLAN + "[power]\np1 = 0.7\np2 = 0.5\nanswers_per_worker = 10\n"
    plan = parse_plan_text(body, "p.toml", CD_FACTS)
    assert plan["power"]["groups"] == 3 and plan["power"]["kind"] == "accuracy"  # between: one per condition
    within = StudyFacts("sim-cd", "class_discrimination", CD_METHODS, "within", ("all",))
    assert parse_plan_text(body, "p.toml", within)["power"]["groups"] == 1
    trust = freeze(parse_plan_text(TRUST_PLAN, "t.toml", TRUST_FACTS), None, frozen_at=WHEN)
    assert trust.planned_n == n_trust_one_sample(0.5, 0.8).workers


def _with(plan: str, old: str, new: str) -> str:
    assert old in plan
    return plan.replace(old, new, 1)


BAD_PLANS = [
    (
        _with(CD_PLAN, 'test = "accuracy_vs_chance"', 'test = "t_test"'),
        "hypothesis 'H1': unknown test 't_test' (known:",
    ),
    (_with(CD_PLAN, 'id = "H2"\n', ""), "hypothesis 2: missing id"),
    (_with(CD_PLAN, 'id = "H2"', 'id = "H1"'), "hypotheses: duplicate id 'H1'"),
    (_with(CD_PLAN, "alpha = 0.05", "alpha = 1.5"), "alpha: must be in (0, 1), got 1.5"),
    (_with(CD_PLAN, "alpha = 0.05", "alpha = 0"), "alpha: must be in (0, 1), got 0"),
    (
        _with(CD_PLAN, 'method = "guided_gradcam"', 'method = "lime"'),
        "hypothesis 'H1': method 'lime' is not a method of study 'sim-cd' (its methods: gradcam, guided_backprop,",
    ),
    (_with(CD_PLAN, 'versus = "guided_backprop"\n', ""), "hypothesis 'H3': test gee_comparison compares two methods"),
    (_with(CD_PLAN, 'versus = "guided_backprop"', 'versus = "guided_gradcam"'), "hypothesis 'H3': versus must differ"),
    (_with(CD_PLAN, 'direction = "less"', 'direction = "smaller"'), "hypothesis 'H2'.direction: must be one of"),
    (_with(CD_PLAN, 'direction = "less"', 'direction = "less"\nvs = "gradcam"'), "hypothesis 'H2'.vs: unknown key"),
    (
        _with(CD_PLAN, 'direction = "less"', 'direction = "less"\nversus = "gradcam"'),
        "hypothesis 'H2': versus is only for the comparisons",
    ),
    (
        _with(CD_PLAN, 'test = "accuracy_vs_chance"', 'test = "trust_mean"'),
        "hypothesis 'H1': test trust_mean is for trust studies; the study is class_discrimination",
    ),
    (_with(CD_PLAN, 'slug = "sim-cd"', 'slug = "other"'), "study.slug: the plan is for study 'other', not 'sim-cd'"),
    (_with(CD_PLAN, "min_median_rt_ms = 300", "min_median_rt_ms = -1"), "exclusions.min_median_rt_ms: must be"),
    (_with(CD_PLAN, "min_median_rt_ms = 300", "max_rt_ms = 300"), "exclusions.max_rt_ms: unknown key"),
    (CD_PLAN + "[power]\np1 = 0.5\np2 = 0.5\n", "power: p1 and p2 must differ"),
    (CD_PLAN + "[power]\np1 = 1.5\np2 = 0.5\n", "power.p1: must be in (0, 1), got 1.5"),
    ("alpha = 0.05\n", "hypotheses: missing (required)"),
    ("alpha = [", "not valid TOML"),
]


@pytest.mark.parametrize(("body", "message"), BAD_PLANS)
def test_plan_mistakes_are_one_line_errors(body, message):
    with pytest.raises(UserError) as e:
        parse_plan_text(body, "plan.toml", CD_FACTS)
    text = str(e.value)
    assert text.startswith("plan.toml: ") and message in text and "\n" not in text


def test_without_the_study_the_kind_comes_from_the_tests_and_groups_are_required(tmp_path):
    assert parse_plan_text(CD_PLAN, "p.toml")["kind"] == "class_discrimination"
    mixed = CD_PLAN + '[[hypotheses]]\nid = "X"\ntext = "x"\ntest = "trust_mean"\nmethod = "gradcam"\n'
    with pytest.raises(UserError, match="mix class-discrimination and trust"):
        parse_plan_text(mixed, "p.toml")
    with pytest.raises(UserError, match="power.groups: missing"):
        parse_plan_text(CD_PLAN + "[power]\np1 = 0.7\np2 = 0.5\n", "p.toml")
    with pytest.raises(UserError, match="plan file not found"):
        parse_plan(tmp_path / "nope.toml")


# --- freezing ----------------------------------------------------------------------------


def test_the_frozen_plan_is_canonical_and_its_hash_ignores_key_order(tmp_path):
    a = freeze(parse_plan_text(CD_PLAN, "a.toml", CD_FACTS), None, frozen_at=WHEN)
    b = freeze(parse_plan_text(CD_PLAN_REORDERED, "b.toml", CD_FACTS), None, frozen_at=WHEN)
    assert a.text == b.text and a.sha256 == b.sha256
    assert a.sha256 == hashlib.sha256(a.text.encode()).hexdigest()
    assert " " not in a.text.split('"hypotheses"')[0] and a.text == json.dumps(
        json.loads(a.text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert a.frozen_at == "2026-03-01T09:30:00Z" and a.frozen_at_datetime() == WHEN
    # Another time, or another alpha, is another plan.
    assert (
        freeze(parse_plan_text(CD_PLAN, "a.toml", CD_FACTS), None, frozen_at=datetime(2026, 3, 2, tzinfo=UTC)).sha256
        != a.sha256
    )
    changed = freeze(
        parse_plan_text(_with(CD_PLAN, "alpha = 0.05", "alpha = 0.01"), "c.toml", CD_FACTS), None, frozen_at=WHEN
    )
    assert changed.sha256 != a.sha256 and changed.plan != a.plan
    # Read back: the exact bytes pass; a pretty-printed or edited copy does not.
    assert load_frozen(a.text).sha256 == a.sha256
    with pytest.raises(UserError, match="not canonical JSON"):
        load_frozen(json.dumps(json.loads(a.text), indent=2), "frozen.json")
    with pytest.raises(UserError, match="not a frozen plan"):
        load_frozen('{"format": "something else"}', "frozen.json")
    tampered = a.text.replace('"alpha":0.05', '"alpha":0.1')
    with pytest.raises(UserError, match=f"does not match its sha256 {a.sha256}"):
        verify_stored(tampered, a.sha256, "study 'sim-cd'")
    assert verify_stored(a.text, a.sha256, "study 'sim-cd'").plan == a.plan


def test_without_exclusions_the_study_rules_are_frozen():
    body = CD_PLAN.split("[exclusions]")[0]
    stored = {"max_failed_attention_checks": 1, "min_median_rt_ms": 450, "require_complete": False}
    frozen = freeze(parse_plan_text(body, "p.toml", CD_FACTS), stored, frozen_at=WHEN)
    assert frozen.plan["exclusions"] == stored and frozen.plan["exclusions_source"] == "study settings"
    defaults = freeze(parse_plan_text(body, "p.toml", CD_FACTS), None, frozen_at=WHEN)
    assert defaults.plan["exclusions"] == {
        "max_failed_attention_checks": 0,
        "min_median_rt_ms": 300,
        "require_complete": True,
    }
    assert defaults.plan["exclusions_source"] == "defaults"


# --- the hook: hypotheses and tables -----------------------------------------------------


def test_hypotheses_are_judged_and_their_tables_are_confirmatory(cd_run):
    _, frozen, result = cd_run
    answer = result["preregistration"]
    assert result["preregistration_error"] is None
    assert answer["sha256"] == frozen.sha256 and answer["frozen_at"] == "2026-03-01T09:30:00Z"
    status = {h["id"]: h["status"] for h in answer["hypotheses"]}
    assert status == {"H1": "supported", "H2": "not supported", "H3": "supported", "H4": "not supported"}
    outcome = {h["id"]: h["outcome"] for h in answer["hypotheses"]}
    assert outcome["H1"].startswith("Supported: accuracy of guided_gradcam 0.")
    assert "opposite direction to the planned less" in outcome["H2"]
    assert "odds ratio guided_gradcam vs guided_backprop" in outcome["H3"] and "Holm-adjusted" in outcome["H3"]
    assert outcome["H4"].startswith("Not supported:")
    ts = answer["table_status"]
    assert ts["accuracy_by_method"] == ts["significance_gee_method_comparisons"] == "confirmatory"
    assert {
        ts[n]
        for n in ("accuracy_by_model_role", "rt_by_method", "agreement", "significance_mixed_model_method_effects")
    } == {"exploratory"}
    # Same rules as the plan and no planned N: nothing deviates.
    assert answer["deviations"] == []
    html = result["html"].read_text(encoding="utf-8")
    assert frozen.sha256 in html and "No deviation from the pre-registration was recorded." in html
    assert '<h3>Accuracy per method <span class="status confirmatory">confirmatory</span></h3>' in html
    assert 'clustered by worker <span class="status confirmatory">confirmatory</span></h3>' in html
    assert '<h3>Accuracy per model role <span class="status exploratory">exploratory</span></h3>' in html
    assert "Supported: accuracy of guided_gradcam" in html and "Not supported: odds ratio gradcam" in html


def test_trust_hypotheses(trust_run):
    _, frozen, result = trust_run
    answer = result["preregistration"]
    by_id = {h["id"]: h for h in answer["hypotheses"]}
    assert by_id["T1"]["status"] == "supported"
    assert "two-way cluster-robust (worker and image) t-test" in by_id["T1"]["outcome"]
    assert result["tables"]["trust_by_method"].set_index("method").loc["guided_gradcam", "p_value"] < 0.05
    assert (
        by_id["T2"]["status"] == "supported"
        and "log odds ratio guided_gradcam vs guided_backprop" in by_id["T2"]["outcome"]
    )
    assert by_id["T3"]["status"] == "not computable" and "reference is neither" in by_id["T3"]["outcome"]
    ts = answer["table_status"]
    assert ts["trust_by_method"] == ts["significance_trust_ordinal"] == "confirmatory"
    assert ts["trust_score_shares"] == "exploratory"
    # 40 analysed workers, the power analysis planned another number: flagged with both.
    planned = frozen.planned_n
    assert planned != 40 and answer["planned_n"] == planned and answer["analysed_n"] == 40
    assert kinds(answer) == ["n_differs"]
    words = "fewer" if 40 < planned else "more"
    assert answer["deviations"] == [
        f"Analysed N = 40 workers; the plan's power analysis planned N = {planned} "
        f"({abs(40 - planned)} {words} than planned)."
    ]


def test_trust_mean_is_judged_on_the_clustered_test_where_the_table_has_it():
    from analysis.preregistration import JUDGES

    judge = JUDGES["trust_mean"]
    # The per-worker tests (which ignore the images) reject, the clustered test does not.
    table = pd.DataFrame(
        [
            {
                "method": "gradcam",
                "n_answers": 400,
                "n_workers": 40,
                "n_images": 20,
                "mean": 0.3,
                "worker_mean": 0.31,
                "p_value": 0.2,
                "wilcoxon_p": 0.002,
                "t_p": 0.001,
            }
        ]
    )
    h = {"method": "gradcam", "direction": "greater", "statistic": "clustered"}
    status, words = judge(h, table, 0.05)
    assert status == "not supported"
    assert words == (
        "mean score for gradcam 0.30 over 400 answers from 40 workers on 20 images against 0, two-way "
        "cluster-robust (worker and image) t-test p = 0.200, not below alpha 0.05"
    )
    # A plan that asked for the Wilcoxon test or the per-worker t-test gets it.
    status, words = judge({**h, "statistic": "t"}, table, 0.05)
    assert status == "supported" and "0.31 against 0, t-test (ignores the clustering by image) p = 0.001" in words
    status, words = judge({**h, "statistic": "wilcoxon"}, table, 0.05)
    assert status == "supported" and "0.31 against 0, Wilcoxon signed-rank (ignores the clustering by image) p" in words
    # A table without the clustered test (an older one): the t-test of the per-worker means.
    status, words = judge(h, table.drop(columns="p_value"), 0.05)
    assert status == "supported" and "0.31 against 0, t-test (ignores the clustering by image) p = 0.001" in words
    status, words = judge(h, table.assign(p_value=float("nan")), 0.05)
    assert status == "not computable" and "gave no p-value" in words


# --- the hook: deviations ----------------------------------------------------------------


def test_a_changed_rule_and_the_participants_it_moves_are_deviations(cd_run):
    df, frozen, result = cd_run
    stricter = dict(result["rules"], min_median_rt_ms=2000)
    answer = evaluate(frozen, context(result, rules=stricter), answers=df, mode="live")
    assert kinds(answer) == ["rule_changed", "extra_exclusions"]
    assert answer["deviations"][0] == "Exclusion rule min_median_rt_ms changed: 300 in the plan, 2000 in the analysis."
    assert "excluded beyond the plan" in answer["deviations"][1]
    assert answer["deviation_records"][1]["participants"] > 0
    laxer = dict(result["rules"], min_median_rt_ms=100, require_complete=False)
    answer = evaluate(frozen, context(result, rules=laxer), answers=df, mode="live")
    assert kinds(answer) == ["rule_changed", "rule_changed", "kept_against_plan"]
    assert "require_complete changed: true in the plan, false in the analysis" in answer["deviations"][1]
    assert "analysed that the plan's rules exclude" in answer["deviations"][2]


def test_exclusions_by_a_rule_the_plan_does_not_use_without_the_answers(cd_run):
    _, _, result = cd_run
    off = freeze(
        parse_plan_text(_with(CD_PLAN, "min_median_rt_ms = 300", "min_median_rt_ms = 0"), "p.toml", CD_FACTS),
        None,
        frozen_at=WHEN,
    )
    assert result["flow"]["excluded_too_fast"] > 0
    answer = evaluate(off, context(result))
    assert kinds(answer) == ["rule_changed", "extra_exclusions"]
    n = result["flow"]["excluded_too_fast"]
    assert answer["deviations"][1] == (
        f"{n} participant(s) excluded by rule too_fast (min_median_rt_ms), which the plan does not use."
    )


def test_an_n_other_than_planned_is_a_deviation_both_ways(cd_run):
    _, _, result = cd_run
    body = CD_PLAN + "[power]\np1 = 0.8\np2 = 0.5\nanswers_per_worker = 12\nicc = 0.1\n"
    frozen = freeze(parse_plan_text(body, "p.toml", CD_FACTS), None, frozen_at=WHEN)
    planned = frozen.planned_n
    for analysed, word in ((planned - 5, "fewer"), (planned + 7, "more")):
        flow = dict(result["flow"], analysed_participants=analysed)
        answer = evaluate(frozen, context(result, flow=flow))
        assert kinds(answer) == ["n_differs"]
        assert answer["deviations"][0] == (
            f"Analysed N = {analysed} workers; the plan's power analysis planned "
            f"N = {planned} ({abs(analysed - planned)} {word} than planned)."
        )
    exact = evaluate(frozen, context(result, flow=dict(result["flow"], analysed_participants=planned)))
    assert exact["deviations"] == []


def test_a_planned_test_that_did_not_run_other_answers_and_other_software_are_deviations(cd_run, monkeypatch):
    df, frozen, result = cd_run
    tables = {k: v for k, v in result["tables"].items() if not k.startswith("significance_")}
    answer = evaluate(frozen, context(result, tables=tables))
    assert kinds(answer) == ["test_not_run", "test_not_run"]
    assert {h["id"]: h["status"] for h in answer["hypotheses"]}["H3"] == "not computable"
    assert answer["deviations"][0].startswith("Hypothesis H3: its planned test (gee_comparison")
    other = df.assign(study="another-study")
    answer = evaluate(frozen, context(result), answers=other, mode="debug")
    assert kinds(answer) == ["study_differs", "mode_not_live"]
    assert "The analysed answers are of mode debug, not live" in answer["deviations"][1]
    trust = evaluate(frozen, context(result, kind="trust"))
    assert kinds(trust)[0] == "kind_differs"
    assert {h["status"] for h in trust["hypotheses"]} == {"not computable"}
    import camstudy

    monkeypatch.setattr(camstudy, "__version__", "99.0")
    assert kinds(evaluate(frozen, context(result))) == ["software_changed"]


def test_the_report_lists_the_deviations(cd_run, tmp_path):
    df, frozen, _ = cd_run
    rules = dict(frozen.plan["exclusions"], min_median_rt_ms=1000)
    result = analyze(
        df,
        rules,
        tmp_path,
        title="t",
        source="s",
        preregistration=preregistration_hook(frozen, answers=df, mode="live"),
        n_boot=20,
    )
    html = result["html"].read_text(encoding="utf-8")
    assert 'id="deviations"' in html and "Exclusion rule min_median_rt_ms changed: 300 in the plan, 1000" in html
    assert "Hypothesis H3: its planned test" in html  # no significance hook: the GEE test did not run
    assert isinstance(pd.read_csv(tmp_path / "accuracy_by_method.csv"), pd.DataFrame)
