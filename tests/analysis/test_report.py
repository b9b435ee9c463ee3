"""The analysis report (analysis/report.py) and ``camstudy analyze`` (analysis/cli.py) on small
simulated exports of both tasks."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import add_analyze_parser, run_analyze
from analysis.report import analyze
from analysis.simulate import simulate_class_discrimination, simulate_trust
from camstudy.errors import UserError

CD_METHODS = {"gradcam": 0.7, "guided_backprop": 0.55}
TRUST_METHODS = {"gradcam": 1.0, "guided_backprop": 0.2}
SECTIONS = ("Data source and counts", "Exclusion flow", "Results", "Figures", "Agreement",
            "Clustered comparisons", "Tests and assumptions", "Software versions")


def _cd(seed: int = 1) -> pd.DataFrame:
    return simulate_class_discrimination(24, 12, CD_METHODS, seed=seed, design="within",
                                         attention_fail_rate=0.1, fast_rate=0.1, incomplete_rate=0.1)


def _trust(seed: int = 1) -> pd.DataFrame:
    return simulate_trust(20, 12, TRUST_METHODS, seed=seed, attention_fail_rate=0.1, fast_rate=0.1)


@pytest.fixture(scope="module")
def cd_report(tmp_path_factory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("cd")
    result = analyze(_cd(), None, out, title="CD <study>", source="simulated",
                     significance=lambda kept: {"gee": pd.DataFrame({"term": ["x"], "p": [0.5]})}, n_boot=50)
    return result, result["html"].read_text(encoding="utf-8"), out


@pytest.fixture(scope="module")
def trust_report(tmp_path_factory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("trust")
    result = analyze(_trust(), None, out, title="Trust", source="simulated", n_boot=50)
    return result, result["html"].read_text(encoding="utf-8"), out


def _flow_from_html(text: str) -> dict[str, int]:
    table = re.search(r'<table[^>]*id="exclusion-flow".*?</table>', text, re.S).group(0)
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>\s*<td>(\d+)</td>", table)
    return {step: int(n) for step, n in rows}


@pytest.mark.parametrize("which", ["cd_report", "trust_report"])
def test_report_sections_figures_and_csvs(which, request):
    result, text, out = request.getfixturevalue(which)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text
    assert text.count('src="data:image/png;base64,') == len(result["figures"]) >= 3
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    names = ({"accuracy_by_method", "accuracy_by_model_role", "accuracy_by_method_model_role"}
             if result["kind"] == "class_discrimination" else {"trust_by_method", "trust_score_shares"})
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
        assert f"<td>{software}</td>" in text


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
    agreement = re.search(r'<table[^>]*id="agreement".*?</table>', text, re.S).group(0)
    lone_row = next(r for r in re.findall(r"<tr>.*?</tr>", agreement, re.S) if "guided_backprop" in r)
    header = re.findall(r"<th>(.*?)</th>", agreement, re.S)
    cells = dict(zip(header, re.findall(r"<td>(.*?)</td>", lone_row, re.S), strict=True))
    for column in ("fleiss_kappa", "alpha", "alpha_low", "alpha_high", "cohen_kappa"):
        assert cells[column] == "not computable", column
    assert cells["alpha_label"] == "not computable"


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
        run_analyze(_parse(["analyze", "no-such-study", "--out", str(tmp_path / "o"),
                            "--db", f"sqlite:///{tmp_path / 'empty.db'}"]))


@pytest.mark.parametrize("make, tables", [
    (_cd, ["significance_gee_method_comparisons.csv", "significance_mixed_model_method_effects.csv"]),
    (_trust, ["significance_trust_one_sample.csv", "significance_trust_pairwise.csv", "significance_trust_ordinal.csv"]),
])
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
