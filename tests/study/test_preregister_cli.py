"""``camstudy preregister`` on the study database: freezing once, the refusals (a changed plan,
live answers, an unknown study), the admin page, the 0004 migration, and ``camstudy analyze``
against the frozen plan (of the study, and of an export with ``--plan``), tampering refused."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

import pandas as pd
import pytest
from sqlalchemy import inspect, select, text

from analysis.preregistration import study_facts
from camstudy.cli import main
from study.db import alembic_config, database_url, make_engine, session_factory, transaction
from study.models import Study
from tests.study import test_admin
from tests.study.test_admin import cd_slug, login, participate, trust_slug
from tests.study.test_api import signed, worker

admin = test_admin.admin


def plan_for(app, slug: str, *, alpha: float = 0.05, extra: str = "", reorder: bool = False) -> str:
    """A plan for the test study ``slug`` over its own methods."""
    with app.extensions["camstudy.sessions"]() as s:
        facts = study_facts(s, s.scalar(select(Study).where(Study.slug == slug)))
    a, b = facts.methods[:2]
    if facts.kind == "trust":
        h = f'id = "T1"\ntext = "Trust favours the stronger model under {a}."\ntest = "trust_mean"\nmethod = "{a}"\n'
        return f"alpha = {alpha}\n[[hypotheses]]\n{h}{extra}"
    h1 = f'id = "H1"\ntext = "{a} is above chance."\ntest = "accuracy_vs_chance"\nmethod = "{a}"\ndirection = "greater"\n'
    h2 = f'id = "H2"\ntext = "{a} beats {b}."\ntest = "gee_comparison"\nmethod = "{a}"\nversus = "{b}"\n'
    if reorder:  # the same plan, each hypothesis's keys in another order
        h1, h2 = ("\n".join(reversed(h.strip().splitlines())) + "\n" for h in (h1, h2))
    return f"alpha = {alpha}\n[[hypotheses]]\n{h1}[[hypotheses]]\n{h2}{extra}"


def stored(app, slug: str) -> tuple:
    with app.extensions["camstudy.sessions"]() as s:
        st = s.scalar(select(Study).where(Study.slug == slug))
        return st.prereg_sha256, st.prereg_json, st.prereg_frozen_at


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_a_plan_is_frozen_once_and_cannot_change(app, client, admin, tmp_path, capsys):
    url, slug = app.config["DATABASE_URL"], cd_slug(app)
    login(client)
    assert "Not pre-registered." in client.get(f"/admin/s/{slug}").get_data(as_text=True)
    # Test answers (debug, sandbox) do not count as data collection.
    participate(app, slug, {**worker(), **signed(app, slug, "debug")})
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_for(app, slug))
    out = tmp_path / "frozen" / "plan.json"

    rc, stdout, _ = run(capsys, "preregister", slug, "--plan", str(plan), "--out", str(out), "--db", url)
    assert rc == 0
    sha, body, frozen_at = stored(app, slug)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha and out.read_text() == body
    assert f"sha256 {sha}" in stdout and frozen_at is not None
    document = json.loads(body)
    assert document["plan"]["study"] == slug and [h["id"] for h in document["plan"]["hypotheses"]] == ["H1", "H2"]
    assert document["plan"]["exclusions_source"] == "study settings"

    # The same plan again (keys in another order): nothing changes, exit 0.
    again = tmp_path / "again.toml"
    again.write_text(plan_for(app, slug, reorder=True))
    out.unlink()
    rc, stdout, _ = run(capsys, "preregister", slug, "--plan", str(again), "--out", str(out), "--db", url)
    assert rc == 0 and "this plan is already frozen" in stdout and f"sha256 {sha}" in stdout
    assert stored(app, slug) == (sha, body, frozen_at) and out.read_text() == body

    # A different plan is refused, in one line; the stored one stays.
    changed = tmp_path / "changed.toml"
    changed.write_text(plan_for(app, slug, alpha=0.01))
    rc, _, err = run(
        capsys, "preregister", slug, "--plan", str(changed), "--out", str(tmp_path / "x.json"), "--db", url
    )
    assert rc == 2 and err.count("\n") == 1
    assert f"study {slug!r} already has a frozen plan sha256 {sha}" in err and "a frozen plan cannot change" in err
    assert stored(app, slug) == (sha, body, frozen_at) and not (tmp_path / "x.json").exists()

    # Mistakes: one line each.
    bad = tmp_path / "bad.toml"
    bad.write_text(plan_for(app, slug).replace('"accuracy_vs_chance"', '"chi_square"'))
    rc, _, err = run(capsys, "preregister", trust_slug(app), "--plan", str(bad), "--out", str(out), "--db", url)
    assert rc == 2 and err.count("\n") == 1 and "unknown test 'chi_square'" in err
    rc, _, err = run(capsys, "preregister", "nope", "--plan", str(plan), "--out", str(out), "--db", url)
    assert rc == 2 and err.count("\n") == 1 and "no study 'nope'" in err

    # The admin page shows the sha256 and when the plan was frozen.
    page = client.get(f"/admin/s/{slug}").get_data(as_text=True)
    assert f'<code class="prereg-sha256">{sha}</code>' in page and "Not pre-registered" not in page
    utc = frozen_at.replace(tzinfo=UTC) if frozen_at.tzinfo is None else frozen_at.astimezone(UTC)
    assert utc.strftime("%Y-%m-%d %H:%M:%S UTC") in page
    assert utc.strftime("%Y-%m-%dT%H:%M:%SZ") == document["frozen_at"]


def test_freezing_after_live_answers_is_refused(app, tmp_path, capsys):
    url, slug = app.config["DATABASE_URL"], trust_slug(app)
    participate(app, slug, n_answers=1, finish=False)
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_for(app, slug))
    rc, _, err = run(capsys, "preregister", slug, "--plan", str(plan), "--out", str(tmp_path / "f.json"), "--db", url)
    assert rc == 2 and err.count("\n") == 1
    assert f"study {slug!r} has 1 live answer already; a plan must be frozen before data collection" in err
    assert stored(app, slug) == (None, None, None) and not (tmp_path / "f.json").exists()


def test_analyze_judges_the_study_against_its_frozen_plan(app, tmp_path, capsys):
    url, slug = app.config["DATABASE_URL"], cd_slug(app)
    # The plan's rules are laxer than the study's (0, 300 ms, complete), and it plans many workers.
    extra = (
        "[exclusions]\nmax_failed_attention_checks = 5\nmin_median_rt_ms = 0\nrequire_complete = false\n"
        "[power]\np1 = 0.55\np2 = 0.5\nanswers_per_worker = 1\ngroups = 1\n"
    )
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_for(app, slug, extra=extra))
    frozen = tmp_path / "frozen.json"
    rc, stdout, _ = run(capsys, "preregister", slug, "--plan", str(plan), "--out", str(frozen), "--db", url)
    assert rc == 0 and "camstudy analyze will report that as a deviation" in stdout
    sha, body, _ = stored(app, slug)
    planned = json.loads(body)["derived"]["planned_n"]
    for _ in range(4):
        participate(app, slug)  # live, after freezing: the data collection
    participate(app, slug, n_answers=2)  # stops part-way: the study's rules exclude it, the plan's keep it

    report = tmp_path / "report"
    rc, stdout, err = run(capsys, "analyze", slug, "--db", url, "--out", str(report), "--n-boot", "20")
    assert rc == 0, err
    assert (report / "preregistration.json").read_bytes() == frozen.read_bytes()
    assert f"pre-registration {sha}:" in stdout and "deviations from the plan" in stdout
    html = (report / "report.html").read_text(encoding="utf-8")
    assert sha in html and 'id="hypotheses"' in html
    assert '<h3>Accuracy per method <span class="status confirmatory">confirmatory</span></h3>' in html
    assert '<span class="status exploratory">exploratory</span>' in html
    assert "Exclusion rule min_median_rt_ms changed: 0 in the plan, 300 in the analysis." in html
    assert "Exclusion rule require_complete changed: false in the plan, true in the analysis." in html
    assert "excluded beyond the plan: the plan&#39;s rules keep them." in html
    flow = pd.read_csv(report / "exclusion_flow.csv").set_index("step")["count"]
    n = int(flow["analysed_participants"])
    assert flow["enrolled"] == 5 and flow["excluded_incomplete"] == 1 and n <= 4
    assert f"Analysed N = {n} workers; the plan&#39;s power analysis planned N = {planned} ({planned - n} fewer" in html

    # An export, judged against the frozen file: the plan's rules are applied (no rule deviation).
    export = tmp_path / "cd.csv"
    assert main(["export", slug, "--out", str(export), "--db", url]) == 0
    capsys.readouterr()
    rc, stdout, err = run(
        capsys, "analyze", str(export), "--plan", str(frozen), "--out", str(tmp_path / "r2"), "--n-boot", "20"
    )
    assert rc == 0, err
    html = (tmp_path / "r2" / "report.html").read_text(encoding="utf-8")
    assert (tmp_path / "r2" / "preregistration.json").read_bytes() == frozen.read_bytes()
    assert "the pre-registered plan" in html and "min_median_rt_ms changed" not in html
    assert f"Analysed N = 5 workers; the plan&#39;s power analysis planned N = {planned}" in html  # no one excluded

    # Refused, one line each: an edited file, another plan for a study, a tampered stored plan.
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(json.loads(frozen.read_text()), indent=1))
    rc, _, err = run(capsys, "analyze", str(export), "--plan", str(edited), "--out", str(tmp_path / "r3"))
    assert rc == 2 and err.count("\n") == 1 and "the frozen plan was edited" in err
    rc, _, err = run(
        capsys, "analyze", slug, "--db", url, "--plan", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r3")
    )
    assert rc == 2 and "frozen plan not found" in err
    with transaction(app.extensions["camstudy.sessions"]) as s:
        st = s.scalar(select(Study).where(Study.slug == slug))
        st.prereg_json = st.prereg_json.replace('"alpha":0.05', '"alpha":0.5')
    rc, _, err = run(capsys, "analyze", slug, "--db", url, "--out", str(tmp_path / "r4"))
    assert rc == 2 and err.count("\n") == 1
    assert f"the stored plan does not match its sha256 {sha}" in err and not (tmp_path / "r4").exists()


def test_analyze_plan_of_a_study_must_be_its_own(app, tmp_path, capsys):
    url, slug = app.config["DATABASE_URL"], cd_slug(app)
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_for(app, slug))
    frozen = tmp_path / "frozen.json"
    other = trust_slug(app)
    trust_plan = tmp_path / "trust.toml"
    trust_plan.write_text(plan_for(app, other))
    assert main(["preregister", other, "--plan", str(trust_plan), "--out", str(frozen), "--db", url]) == 0
    participate(app, slug)
    capsys.readouterr()
    rc, _, err = run(capsys, "analyze", slug, "--db", url, "--plan", str(frozen), "--out", str(tmp_path / "r"))
    assert rc == 2 and err.count("\n") == 1 and f"is not study {slug!r}'s frozen plan (none stored)" in err


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_0004_adds_the_preregistration_columns_and_drops_them_again(db_url):
    from alembic import command

    cfg = alembic_config(database_url(db_url))
    command.upgrade(cfg, "0003")
    engine = make_engine(db_url)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO study (id, slug, title, kind, config_toml, config_sha256, settings, stimuli_dir, "
                "manifest_sha256, secret, enrollments, created_at) VALUES (1, 's', 't', 'trust', '', '', '{}', "
                "'', '', 'k', 0, CURRENT_TIMESTAMP)"
            )
        )
    command.upgrade(cfg, "head")
    columns = {col["name"] for col in inspect(engine).get_columns("study")}
    assert {"prereg_sha256", "prereg_json", "prereg_frozen_at"} <= columns
    with session_factory(engine)() as s:
        st = s.get(Study, 1)
        assert (st.prereg_sha256, st.prereg_json, st.prereg_frozen_at) == (None, None, None)
    command.downgrade(cfg, "0003")
    assert not {"prereg_sha256", "prereg_json", "prereg_frozen_at"} & {
        col["name"] for col in inspect(engine).get_columns("study")
    }
    with engine.connect() as c:
        assert c.execute(text("SELECT slug FROM study")).scalar() == "s"
    engine.dispose()
