"""The analysis report (analysis/report.py) and ``camstudy analyze`` (analysis/cli.py) on small
simulated exports of both tasks."""

from __future__ import annotations

import argparse
import html
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import add_analyze_parser, run_analyze
from analysis.report import analyze
from analysis.report_tables import COLUMN_LABELS
from analysis.simulate import simulate_class_discrimination, simulate_trust
from camstudy.errors import UserError

CD_METHODS = {"gradcam": 0.7, "guided_backprop": 0.55}
TRUST_METHODS = {"gradcam": 1.0, "guided_backprop": 0.2}
SECTIONS = (
    "Data source and counts",
    "Exclusion flow",
    "Results",
    "Figures",
    "Agreement",
    "Clustered comparisons",
    "Tests and assumptions",
    "Software versions",
)


def _cd(seed: int = 1) -> pd.DataFrame:
    return simulate_class_discrimination(
        24, 12, CD_METHODS, seed=seed, design="within", attention_fail_rate=0.1, fast_rate=0.1, incomplete_rate=0.1
    )


def _trust(seed: int = 1) -> pd.DataFrame:
    return simulate_trust(20, 12, TRUST_METHODS, seed=seed, attention_fail_rate=0.1, fast_rate=0.1)


@pytest.fixture(scope="module")
def cd_report(tmp_path_factory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("cd")
    result = analyze(
        _cd(),
        None,
        out,
        title="CD <study>",
        source="simulated",
        significance=lambda kept: {"gee": pd.DataFrame({"term": ["x"], "p": [0.5]})},
        n_boot=50,
    )
    return result, result["html"].read_text(encoding="utf-8"), out


@pytest.fixture(scope="module")
def trust_report(tmp_path_factory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("trust")
    result = analyze(_trust(), None, out, title="Trust", source="simulated", n_boot=50)
    return result, result["html"].read_text(encoding="utf-8"), out


def _flow_from_html(text: str) -> dict[str, int]:
    """The flow table's (CSV step id, count) pairs: the words first, then the count, then the id."""
    table = re.search(r'<table[^>]*id="exclusion-flow".*?</table>', text, re.S).group(0)
    rows = re.findall(r"<tr><td[^>]*>[^<]+</td><td[^>]*>([\d,]+)</td><td[^>]*>([^<]+)</td></tr>", table)
    return {step: int(n.replace(",", "")) for n, step in rows}


@pytest.mark.parametrize("which", ["cd_report", "trust_report"])
def test_report_sections_figures_and_csvs(which, request):
    result, text, out = request.getfixturevalue(which)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text
    assert text.count('src="data:image/png;base64,') == len(result["figures"]) >= 3
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    names = (
        {"accuracy_by_method", "accuracy_by_model_role", "accuracy_by_method_model_role"}
        if result["kind"] == "class_discrimination"
        else {"trust_by_method", "trust_score_shares"}
    )
    for name in names | {"agreement", "exclusion_flow", "rt_by_method", "rt_histogram"}:
        assert (out / f"{name}.csv").is_file(), name
        assert f"{name}.csv" in text
    for path in result["figures"].values():
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every figure's caption names the CSV it was drawn from.
    for caption in re.findall(r"<figcaption>(.*?)</figcaption>", text, re.S):
        assert re.search(r"Drawn from \w+\.csv", caption)
    assert _flow_from_html(text) == result["flow"]
    for software in ("python", "pandas", "scipy", "statsmodels", "numpy", "matplotlib", "camstudy"):
        assert re.search(f"<td[^>]*>{software}</td>", text), software


def test_exclusion_flow_matches_planted(cd_report):
    result, _, out = cd_report
    flow = result["flow"]
    assert flow["excluded_attention"] == flow["excluded_too_fast"] == flow["excluded_incomplete"] == 2
    assert flow["analysed_participants"] == 18
    written = pd.read_csv(out / "exclusion_flow.csv")
    assert dict(zip(written["step"], written["count"], strict=True)) == flow


def test_significance_tables_and_errors(cd_report, tmp_path):
    result, text, out = cd_report
    assert (out / "significance_gee.csv").is_file()
    assert "significance_gee.csv" in text and result["significance_error"] is None

    def broken(kept: pd.DataFrame) -> dict:
        raise RuntimeError("singular <matrix>")

    bad = analyze(_cd(), None, tmp_path, title="t", source="s", significance=broken, n_boot=20)
    page = bad["html"].read_text(encoding="utf-8")
    assert bad["significance_error"] == "RuntimeError: singular <matrix>"
    assert "The clustered comparisons failed: RuntimeError: singular &lt;matrix&gt;" in page


def test_trust_report_without_hook(trust_report):
    _, text, _ = trust_report
    assert "No clustered comparison was run" in text
    assert "Wilcoxon signed-rank" in text


def test_html_escapes_names(tmp_path):
    df = _cd()
    evil = "<script>alert(1)</script>"
    df["method"] = df["method"].where(df["method"] != "gradcam", evil)
    df["participant"] = df["participant"].where(df["participant"] != df["participant"].iloc[0], evil + "w")
    result = analyze(df, None, tmp_path, title=evil, source=evil, n_boot=20)
    text = result["html"].read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_single_rater_item_is_not_computable(tmp_path):
    df = _cd()
    # One method whose every item has a single rater: give each row its own item.
    lone = df["method"] == "guided_backprop"
    df.loc[lone, "item_id"] = [f"lone{i}" for i in range(int(lone.sum()))]
    result = analyze(df, None, tmp_path, title="t", source="s", n_boot=20)
    row = result["tables"]["agreement"].set_index("method").loc["guided_backprop"]
    assert pd.isna(row["alpha"]) and pd.isna(row["fleiss_kappa"])
    text = result["html"].read_text(encoding="utf-8")
    # The agreement table is shown in two parts (each repeats the method); headers are words.
    cells = {}
    for table in re.findall(r'<table[^>]*id="agreement(?:-2)?".*?</table>', text, re.S):
        lone_row = next(r for r in re.findall(r"<tr>.*?</tr>", table, re.S) if "Guided Backprop" in r)
        header = [html.unescape(h) for h in re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", table, re.S)]
        cells |= dict(zip(header, re.findall(r"<td[^>]*>(.*?)</td>", lone_row, re.S), strict=True))
    for column in ("fleiss_kappa", "alpha", "alpha_low", "alpha_high", "cohen_kappa"):
        assert cells[COLUMN_LABELS[column]] == "not computable", column
    assert cells[COLUMN_LABELS["alpha_label"]] == "not computable"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="camstudy")
    add_analyze_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_on_export_file(tmp_path, capsys, suffix):
    path = tmp_path / f"answers{suffix}"
    df = _trust(2)
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path, index=False)
    args = _parse(["analyze", str(path), "--out", str(tmp_path / "out"), "--n-boot", "20"])
    assert args.func is run_analyze
    assert run_analyze(args) == 0
    printed = capsys.readouterr().out
    report = tmp_path / "out" / "report.html"
    assert f"report: {report}" in printed
    text = report.read_text(encoding="utf-8")
    assert "the defaults of study.settings.Exclusions" in text


def test_cli_missing_column_is_a_user_error(tmp_path):
    path = tmp_path / "broken.csv"
    _cd().drop(columns=["rt_ms"]).to_csv(path, index=False)
    with pytest.raises(UserError, match="missing column rt_ms"):
        run_analyze(_parse(["analyze", str(path), "--out", str(tmp_path / "out")]))


def test_cli_missing_file_and_unknown_study_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        run_analyze(_parse(["analyze", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]))
    with pytest.raises(UserError):
        run_analyze(
            _parse(
                ["analyze", "no-such-study", "--out", str(tmp_path / "o"), "--db", f"sqlite:///{tmp_path / 'empty.db'}"]
            )
        )


@pytest.mark.parametrize(
    "make, tables",
    [
        (_cd, ["significance_gee_method_comparisons.csv", "significance_mixed_model_method_effects.csv"]),
        (
            _trust,
            ["significance_trust_one_sample.csv", "significance_trust_pairwise.csv", "significance_trust_ordinal.csv"],
        ),
    ],
)
def test_camstudy_analyze_includes_the_clustered_comparisons(tmp_path, capsys, make, tables):
    from camstudy.cli import main

    export = tmp_path / "answers.csv"
    make().to_csv(export, index=False)
    assert main(["analyze", str(export), "--out", str(tmp_path / "out"), "--n-boot", "50"]) == 0
    assert "report:" in capsys.readouterr().out
    html = (tmp_path / "out" / "report.html").read_text()
    for name in tables:
        assert (tmp_path / "out" / name).is_file() and name in html
    assert "The clustered comparisons failed" not in html


# --------------------------------------------------------------------------------------
# The report a researcher pastes into a paper: the real clustered tables, word headers,
# Markdown and LaTeX, the sample behind every model, pre-registration, the page's width.

FULL_CD = {"guided_gradcam": 0.68, "guided_backprop": 0.5, "deconvnet": 0.56}
FULL_TRUST = {"guided_gradcam": 1.0, "guided_backprop": 0.3, "deconvnet": 0.0}


@pytest.fixture(scope="module")
def cd_full(tmp_path_factory) -> tuple[dict, str, Path, pd.DataFrame]:
    from analysis.significance import report_tables

    df = simulate_class_discrimination(30, 24, FULL_CD, seed=5, design="within", attention_fail_rate=0.1)
    out = tmp_path_factory.mktemp("cd_full")
    result = analyze(
        df, None, out, title="Class discrimination", source="simulated", significance=report_tables, n_boot=50
    )
    return result, result["html"].read_text(encoding="utf-8"), out, df


@pytest.fixture(scope="module")
def trust_full(tmp_path_factory) -> tuple[dict, str, Path, pd.DataFrame]:
    from analysis.significance import report_tables

    df = simulate_trust(30, 18, FULL_TRUST, seed=5, attention_fail_rate=0.1)
    out = tmp_path_factory.mktemp("trust_full")
    result = analyze(df, None, out, title="Trust", source="simulated", significance=report_tables, n_boot=50)
    return result, result["html"].read_text(encoding="utf-8"), out, df


def _kept(df: pd.DataFrame) -> pd.DataFrame:
    from analysis.exclusions import apply_exclusions

    return apply_exclusions(df, None)[0]


def _md_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and body cells of the Markdown pipe table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]

    def cells(line: str) -> list[str]:
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]

    assert re.fullmatch(r"\|(:?-+:?\|)+", lines[1]), lines[1]
    return cells(lines[0]), [cells(line) for line in lines[2:]]


@pytest.mark.parametrize("which", ["cd_full", "trust_full", "cd_report"])
def test_every_table_is_also_markdown_and_booktabs_latex(which, request):
    from analysis.report_tables import display

    result, _, out = request.getfixturevalue(which)[:3]
    for name, table in result["tables"].items():
        assert result["csv"][name] == out / f"{name}.csv"
        assert list(pd.read_csv(out / f"{name}.csv").columns) == list(table.columns)  # the CSV keeps the ids
        shown = display(name, table)
        header, rows = _md_table((out / f"{name}.md").read_text(encoding="utf-8"))
        assert header == shown.headers and len(rows) == len(table), name
        assert all("_" not in h for h in header), (name, header)
        tex = (out / f"{name}.tex").read_text(encoding="utf-8")
        top, mid, bottom = tex.index(r"\toprule"), tex.index(r"\midrule"), tex.index(r"\bottomrule")
        assert top < mid < bottom, name
        spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", tex).group(1)
        assert len(spec) == len(shown.columns)
        body = [line for line in tex[mid:bottom].splitlines()[1:] if line.strip()]
        assert len(body) == len(table), name
        for line in [tex[top:mid].splitlines()[1], *body]:
            assert len(re.split(r"(?<!\\)&", line)) == len(shown.columns), line
            assert not re.search(r"(?<!\\)[_%#]", line), line  # escaped
        assert not re.search(r"(?<!\\)[_%#]", re.search(r"\\caption\{(.*)\}", tex).group(1))


def test_latex_escape():
    from analysis.report_tables import latex_escape

    assert latex_escape("a_b & 50% #1 {x} $5 ~^\\") == (
        r"a\_b \& 50\% \#1 \{x\} \$5 \textasciitilde{}"
        r"\textasciicircum{}\textbackslash{}"
    )
    assert latex_escape("Krippendorff's α ≈95%") == r"Krippendorff's $\alpha$ $\approx$95\%"


@pytest.mark.parametrize("which", ["cd_full", "trust_full"])
def test_headers_are_words_and_methods_have_names(which, request):
    result, text, _, _ = request.getfixturevalue(which)
    headers = [html.unescape(h) for h in re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", text, re.S)]
    assert headers and all("_" not in h for h in headers), [h for h in headers if "_" in h]
    assert "Workers" in headers and "Images" in headers and "95% CI low" in headers
    assert "Guided Grad-CAM" in text and "guided_gradcam</td>" not in text
    if result["kind"] == "class_discrimination":
        assert {"p (Holm)", "Odds ratio", "Odds ratio 95% CI low", "p vs chance"} <= set(headers)


def test_attention_checks_are_never_a_method(cd_full):
    result, text, out, df = cd_full
    assert (df.loc[df["is_attention_check"], "method"] == "photo").all() and df["is_attention_check"].any()
    for name, table in result["tables"].items():
        for column in ("method", "method_a", "method_b", "reference"):
            if column in table.columns:
                assert "photo" not in set(table[column].astype(str)), (name, column)
        assert "photo" not in (out / f"{name}.md").read_text(encoding="utf-8").lower(), name
    assert "photo" not in text.lower()  # no method row, no counts entry, no figure label (figures are PNG)


def test_model_tables_show_the_sample_they_were_fitted_on(cd_full, trust_full):
    result, text, _, df = cd_full
    kept = _kept(df)
    workers = kept.groupby(["mode", "participant"]).ngroups
    for name in ("significance_gee_method_comparisons", "significance_mixed_model_method_effects"):
        table = result["tables"][name]
        assert (table["n_answers"] == len(kept)).all() and (table["n_workers"] == workers).all()
        assert (table["n_images"] == kept["image_id"].nunique()).all()
    assert f"Fitted on {len(kept):,} answers from {workers} workers on {kept['image_id'].nunique()} images." in text
    acc = result["tables"]["accuracy_by_method"].set_index("method")
    for method, part in kept.groupby("method"):
        assert acc.loc[method, "n_workers"] == part.groupby(["mode", "participant"]).ngroups
        assert acc.loc[method, "n_images"] == part["image_id"].nunique()

    result, text, _, df = trust_full
    kept = _kept(df)
    ordinal = result["tables"]["significance_trust_ordinal"]
    assert (ordinal["n_answers"] == ordinal.attrs["n_answers"]).all()
    assert (ordinal["n_workers"] == ordinal.attrs["n_workers"]).all()
    assert (ordinal["n_images"] == kept["image_id"].nunique()).all()
    one = result["tables"]["significance_trust_one_sample"].set_index("method")
    for method, part in kept.groupby("method"):
        assert one.loc[method, "n_images"] == part["image_id"].nunique()
        assert one.loc[method, "n_answers"] == len(part)


def test_ordinal_cut_points_and_mixed_random_effects(cd_full, trust_full):
    tables = trust_full[0]["tables"]
    attrs = tables["significance_trust_ordinal"].attrs
    cuts = tables["significance_trust_ordinal_cut_points"]
    assert list(cuts["lower_score"]) == list(attrs["categories"][:-1])
    assert list(cuts["upper_score"]) == list(attrs["categories"][1:])
    assert cuts["cut_point"].to_numpy() == pytest.approx(attrs["thresholds"])
    assert cuts["cut_point"].is_monotonic_increasing
    assert "Ordinal model: cut points" in trust_full[1]

    tables = cd_full[0]["tables"]
    attrs = tables["significance_mixed_model_method_effects"].attrs
    random = tables["significance_mixed_model_method_effects_random_effects"].set_index("effect")["sd_logit"]
    assert random.to_dict() == pytest.approx({"worker": attrs["worker_sd"], "image": attrs["image_sd"]})
    assert "Worker (random intercept)" in cd_full[1]


def test_paired_trust_difference_has_its_t_interval(trust_full):
    from scipy import stats

    result, _, _, df = trust_full
    kept = _kept(df)
    means = kept.assign(worker=kept["mode"] + "/" + kept["participant"]).pivot_table(
        index="worker", columns="method", values="score_stronger", aggfunc="mean"
    )
    pairs = result["tables"]["significance_trust_pairwise"]
    assert len(pairs) == 3
    for r in pairs.to_dict("records"):
        both = means[[r["method_a"], r["method_b"]]].dropna()
        diff = both[r["method_a"]] - both[r["method_b"]]
        assert len(diff) == r["n_workers"] and diff.mean() == pytest.approx(r["mean_diff"])
        low, high = stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff))
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
        assert (r["t_p"] < 0.05) == (not r["ci_low"] <= 0 <= r["ci_high"])  # the same numbers as the test
        used = kept[
            kept["method"].isin([r["method_a"], r["method_b"]])
            & (kept["mode"] + "/" + kept["participant"]).isin(both.index)
        ]
        assert r["n_answers"] == len(used) and r["n_images"] == used["image_id"].nunique()


def test_odds_ratios_and_approximate_intervals_are_labelled(cd_full):
    from analysis.report_tables import display

    result, text, _, _ = cd_full
    gee = display("significance_gee_method_comparisons", result["tables"]["significance_gee_method_comparisons"])
    h = gee.headers
    assert h[h.index("Odds ratio") : h.index("Odds ratio") + 3] == [
        "Odds ratio",
        "Odds ratio 95% CI low",
        "Odds ratio 95% CI high",
    ]
    assert h.index("log odds ratio") > h.index("Odds ratio 95% CI high") + 1  # not beside the odds ratio
    mixed = display(
        "significance_mixed_model_method_effects", result["tables"]["significance_mixed_model_method_effects"]
    )
    assert "approximate" in mixed.title and "Odds ratio ≈95% interval low" in mixed.headers
    assert "variational Bayes; intervals approximate" in html.unescape(text)


def _prereg_hook(seen: list):
    def hook(context: dict) -> dict:
        seen.append(context)
        return {
            "sha256": "ab" * 32,
            "frozen_at": "2026-01-02T03:04:05Z",
            "hypotheses": [
                {"id": "H1", "text": "Guided Grad-CAM beats Guided Backprop <b>", "test": "GEE", "outcome": "supported"}
            ],
            "deviations": ["Ran 30 workers, not 40"],
            "table_status": {
                "significance_gee_method_comparisons": "confirmatory",
                "accuracy_by_method": "confirmatory",
            },
        }

    return hook


def test_preregistration_hook(tmp_path):
    from analysis.significance import report_tables

    seen: list = []
    df = simulate_class_discrimination(20, 16, FULL_CD, seed=3, design="within")
    result = analyze(
        df,
        None,
        tmp_path,
        title="t",
        source="s",
        significance=report_tables,
        preregistration=_prereg_hook(seen),
        n_boot=20,
    )
    assert set(seen[0]) == {"kind", "flow", "rules", "tables"} and seen[0]["kind"] == "class_discrimination"
    assert "significance_gee_method_comparisons" in seen[0]["tables"]
    assert result["preregistration"]["sha256"] == "ab" * 32 and result["preregistration_error"] is None
    text = result["html"].read_text(encoding="utf-8")
    section = re.search(r'<section id="preregistration">.*?</section>', text, re.S).group(0)
    assert "ab" * 32 in section and "2026-01-02T03:04:05Z" in section and "H1" in section
    assert "&lt;b&gt;" in section and "supported" in section
    assert re.search(r'class="warning".*Ran 30 workers, not 40', section, re.S)
    headings = dict(re.findall(r"<h3>([^<]+?) <span class=\"status (\w+)\">", text))
    assert headings["Accuracy per method"] == "confirmatory"
    assert headings["Method comparisons: GEE logistic model, clustered by worker"] == "confirmatory"
    assert headings["Accuracy per model role"] == "exploratory"


def test_preregistration_missing_or_failing(cd_report, tmp_path):
    _, text, _ = cd_report
    assert "This analysis was not pre-registered: every result in this report is exploratory." in text
    assert 'class="status confirmatory"' not in text and 'class="status exploratory"' in text

    def broken(context: dict) -> dict:
        raise ValueError("frozen plan <changed>\nsecond line")

    result = analyze(_cd(), None, tmp_path, title="t", source="s", preregistration=broken, n_boot=20)
    assert result["preregistration"] is None
    assert result["preregistration_error"] == "ValueError: frozen plan <changed>"
    page = result["html"].read_text(encoding="utf-8")
    assert "The pre-registration hook failed: ValueError: frozen plan &lt;changed&gt;" in page


def test_template_is_package_data():
    import tomllib
    from importlib.resources import files

    assert (files("analysis") / "templates" / "report.html.j2").is_file()
    config = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["package-data"]["analysis"] == ["templates/*"]
    assert any(d.startswith("jinja2") for d in config["project"]["optional-dependencies"]["analysis"])


def test_report_fits_1200px_in_chromium(cd_full, trust_full):
    """No table needs horizontal scrolling at 1200 x 900, and neither does the page.
    ``CAMSTUDY_REPORT_SHOTS=DIR`` saves full-page screenshots of both reports into DIR."""
    from tests.e2e.test_browser import MISSING, REQUIRE

    if MISSING is not None and not REQUIRE:
        pytest.skip(f"{MISSING}; CAMSTUDY_REQUIRE_BROWSER=1 makes this a failure")
    _assert_fits(
        {"cd": cd_full[0]["html"], "trust": trust_full[0]["html"]}, shots=os.environ.get("CAMSTUDY_REPORT_SHOTS")
    )


def test_report_uses_the_clustered_accuracy_columns(tmp_path):
    """accuracy.py's clustered intervals (n_workers, n_images, ci_method, wilson_*, binom_p;
    trust: n_images, ci_method, worker_t_*) are what the report shows, labels, draws and says."""
    from analysis.report_models import sample_counts, trials
    from analysis.significance import report_tables

    df = _cd()
    cd = analyze(df, None, tmp_path / "cd", title="t", source="s", significance=report_tables, n_boot=20)
    acc = cd["tables"]["accuracy_by_method"]
    assert {"ci_method", "wilson_low", "wilson_high", "binom_p"} <= set(acc.columns)
    kept = _kept(df)
    recount = sample_counts(trials(kept, "correct"), ["method"]).set_index("method")
    assert acc.set_index("method")[["n_workers", "n_images"]].equals(recount[["n_workers", "n_images"]])
    assert (acc["ci_low"] <= acc["wilson_low"] + 1e-12).all() and (acc["ci_high"] >= acc["wilson_high"] - 1e-12).all()
    text = html.unescape(cd["html"].read_text(encoding="utf-8"))
    assert "Wilson 95% CI low (ignores clustering)" in text and "Exact binomial p (ignores clustering)" in text
    assert f"CI method: {acc['ci_method'].iloc[0]}." in text
    assert acc["ci_method"].iloc[0].startswith("two-way cluster-robust (worker and image)")
    assert "respect the clustering of answers: two-way cluster-robust" in cd["words"][1]
    assert "clustered 95% intervals" in text and "Wilson score intervals" not in cd["words"][1]
    trust = analyze(_trust(), None, tmp_path / "trust", title="t", source="s", significance=report_tables, n_boot=20)
    summary = trust["tables"]["trust_by_method"]
    assert {"n_images", "ci_method", "worker_t_low", "worker_t_high"} <= set(summary.columns)
    text = html.unescape(trust["html"].read_text(encoding="utf-8"))
    assert "t 95% CI high (worker means)" in text
    assert "the intervals are two-way cluster-robust" in trust["words"][-1]
    assert "respects the clustering of answers by worker and image" in trust["words"][-1]
    assert "they ignore the clustering by image" in trust["words"][-1]
    assert "p vs 0 (clustered)" in text and "Wilcoxon p (Holm; ignores image clustering)" in text
    # The clustered test of the mean is the test of its interval.
    excludes = (summary["ci_low"] > 0) | (summary["ci_high"] < 0)
    assert (excludes == (summary["p_value"] < 0.05)).all()
    _assert_fits(
        {"cd-clustered": cd["html"], "trust-clustered": trust["html"]}, shots=os.environ.get("CAMSTUDY_REPORT_SHOTS")
    )


def _assert_fits(pages: dict[str, Path], shots: str | None = None) -> None:
    """Open each report at 1200 x 900 in Chromium: every table's scrollWidth fits its
    container and the page does not scroll sideways; screenshots into ``shots`` when given.
    Without the browser: a failure under CAMSTUDY_REQUIRE_BROWSER=1, else nothing."""
    from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, MISSING, REQUIRE, sync_playwright

    if MISSING is not None:
        if REQUIRE:
            pytest.fail(f"CAMSTUDY_REQUIRE_BROWSER=1 but the browser is missing: {MISSING}")
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        for name, path in pages.items():
            page.goto(path.as_uri())
            widths = page.evaluate("""() => [...document.querySelectorAll('table')].map(
                t => [t.id, t.scrollWidth, t.parentElement.clientWidth])""")
            assert len(widths) >= 10, name
            wide = [w for w in widths if w[1] > w[2]]
            assert not wide, (name, wide)
            assert page.evaluate("document.scrollingElement.scrollWidth") <= 1200, name
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(shots) / f"report-{name}.png"), full_page=True)
        browser.close()
