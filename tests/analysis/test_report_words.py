"""The report's "Results in words" (analysis/words.py) on seeded simulated studies.

Each sentence has a fixed structure; the tests parse it back and check every number and every
verdict against the tables the report wrote (never against hard-coded values), so they hold
whatever the numbers of a seed are. The README's example paragraph is this module's
:func:`readme_example`; ``python -m tests.analysis.test_report_words`` prints it.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import analyze
from analysis.report_tables import METHOD_NAMES, method_name
from analysis.simulate import simulate_class_discrimination, simulate_trust
from analysis.words import ALPHA, apa_p, ci_pct, class_discrimination_words, pct, trust_estimate

# The Grad-CAM paper's class-discrimination accuracies (Table 1) and trust-like mean scores.
PAPER = {"guided_gradcam": 0.6123, "guided_backprop": 0.4444, "deconvnet": 0.5333, "deconv_gradcam": 0.6037}
TRUST = {"guided_gradcam": 1.27, "guided_backprop": 0.42, "deconvnet": -0.1}
README = Path(__file__).parents[2] / "README.md"
NAME_OF = {v: k for k, v in METHOD_NAMES.items()}
P = r"p [<=>] \.\d{3}"


def _sentences(paragraph: str) -> list[str]:
    return re.split(r"(?<=\)\.) (?=[A-Z])", paragraph)


@pytest.fixture(scope="module")
def cd(tmp_path_factory) -> dict:
    from analysis.significance import report_tables

    df = simulate_class_discrimination(
        40, 32, PAPER, seed=11, design="within", attention_fail_rate=0.05, fast_rate=0.05
    )
    return analyze(
        df, None, tmp_path_factory.mktemp("cd"), title="cd", source="sim", significance=report_tables, n_boot=20
    )


@pytest.fixture(scope="module")
def trust(tmp_path_factory) -> dict:
    from analysis.significance import report_tables

    df = simulate_trust(36, 18, TRUST, seed=11, attention_fail_rate=0.05)
    return analyze(
        df, None, tmp_path_factory.mktemp("trust"), title="trust", source="sim", significance=report_tables, n_boot=20
    )


def test_apa_numbers():
    assert apa_p(0.0004) == "p < .001"
    assert apa_p(0.001) == "p = .001"
    assert apa_p(0.0123) == "p = .012"
    assert apa_p(0.5) == "p = .500"
    assert apa_p(0.99995) == "p > .999"
    assert apa_p(math.nan) == "p not computable"
    assert pct(0.6123) == "61.2%" and pct(1.0) == "100.0%"
    assert ci_pct(0.5752, 0.6481) == "95% CI [57.5, 64.8]"


SENTENCE_CD = re.compile(
    r"With (?P<method>[^,]+), workers chose the right category in (?P<acc>\d+\.\d)% of trials "
    r"\(95% CI \[(?P<lo>\d+\.\d), (?P<hi>\d+\.\d)\]; (?P<n>[\d,]+) answers from (?P<w>[\d,]+) workers on "
    r"(?P<i>[\d,]+) images\), (?P<chance>above chance|below chance|not reliably different from chance) "
    rf"\((?P<p>{P})\)(?P<rest>.*)\.$"
)
COMPARISON = re.compile(
    r"more than with|less than with|with no reliable difference from|but not reliably different from|"
    rf"(?P<name>[A-Z][A-Za-z -]*?) \(OR (?P<odds>\d+\.\d\d), 95% CI \[(?P<lo>[\d.]+), (?P<hi>[\d.]+)\], "
    rf"(?P<p>{P})\)"
)
VERDICT = {
    "more than with": "more",
    "less than with": "less",
    "with no reliable difference from": "none",
    "but not reliably different from": "none",
}


def test_class_discrimination_sentences_match_the_tables(cd):
    tables = cd["tables"]
    acc = tables["accuracy_by_method"].set_index("method")
    gee = tables["significance_gee_method_comparisons"]
    sentences = _sentences(cd["words"][0])
    assert len(sentences) == len(acc)
    ranked = []
    for sentence in sentences:
        m = SENTENCE_CD.match(sentence)
        assert m, sentence
        method = NAME_OF[m["method"]]
        ranked.append(method)
        row = acc.loc[method]
        assert m["acc"] == f"{100 * row['accuracy']:.1f}"
        assert (m["lo"], m["hi"]) == (f"{100 * row['ci_low']:.1f}", f"{100 * row['ci_high']:.1f}")
        assert (int(m["n"].replace(",", "")), int(m["w"]), int(m["i"])) == (row["n"], row["n_workers"], row["n_images"])
        assert m["p"] == apa_p(row["p_value"])
        expected = (
            "not reliably different from chance"
            if not row["p_value"] < ALPHA
            else "above chance"
            if row["accuracy"] > 0.5
            else "below chance"
        )
        assert m["chance"] == expected
        # Every less accurate method once, with the GEE pair's numbers and the Holm verdict.
        verdict, seen = None, []
        for c in COMPARISON.finditer(m["rest"]):
            if c["name"] is None:
                verdict = VERDICT[c.group(0)]
                continue
            other = NAME_OF[c["name"].removeprefix("with ").strip()]
            seen.append(other)
            pair = gee[
                ((gee["method_a"] == method) & (gee["method_b"] == other))
                | ((gee["method_a"] == other) & (gee["method_b"] == method))
            ].iloc[0]
            flip = pair["method_a"] != method
            odds = 1 / pair["odds_ratio"] if flip else pair["odds_ratio"]
            low, high = (1 / pair["ci_high"], 1 / pair["ci_low"]) if flip else (pair["ci_low"], pair["ci_high"])
            assert (c["odds"], c["lo"], c["hi"]) == (f"{odds:.2f}", f"{low:.2f}", f"{high:.2f}")
            assert c["p"] == apa_p(pair["p_holm"])
            assert verdict == ("none" if not pair["p_holm"] < ALPHA else "more" if odds > 1 else "less")
        assert sorted(seen) == sorted(set(acc.index) - set(ranked))
    assert ranked == list(acc.sort_values("accuracy", ascending=False).index)
    # The paper's strongest effect is found and said.
    assert "more than with Guided Backprop" in cd["words"][0]
    methods = cd["words"][1]
    assert "Holm-adjusted across the 6 pairs" in methods and "α = .05" in methods
    assert ("respect the clustering" in methods) == ("ci_method" in acc.columns)
    assert "variational Bayes: approximate intervals, not a test" in methods


SENTENCE_TRUST = re.compile(
    r"With (?P<method>[^,]+), the mean score in favour of the stronger model was (?P<mean>-?\d+\.\d\d) "
    r"\(95% CI \[(?P<lo>-?\d+\.\d\d), (?P<hi>-?\d+\.\d\d)\]; (?P<n>[\d,]+) answers from (?P<w>\d+) workers on "
    r"(?P<i>\d+) images\), (?P<verdict>reliably above zero|reliably below zero \(in favour of the weaker "
    rf"model\)|not reliably different from zero) \(clustered t test, (?P<pc>{P}); per-worker means, ignoring "
    r"the images: Wilcoxon signed-rank W = (?P<W>[\d.]+), "
    rf"(?P<pw>{P}); t\((?P<df>\d+)\) = (?P<t>-?\d+\.\d\d), (?P<pt>{P})\)\.$"
)
SENTENCE_PAIR = re.compile(
    r"(?:Workers who rated both favoured the stronger model more with (?P<a>.+?) than with (?P<b>.+?)|"
    r"Between (?P<a0>.+?) and (?P<b0>.+?) there was no reliable difference) \(mean paired difference "
    r"(?P<d>\d+\.\d\d), 95% CI \[(?P<lo>-?\d+\.\d\d), (?P<hi>-?\d+\.\d\d)\], (?P<n>\d+) workers; Wilcoxon "
    rf"W = (?P<W>[\d.]+), (?P<pw>{P}); t\((?P<df>\d+)\) = (?P<t>-?\d+\.\d\d), (?P<pt>{P})\)\.$"
)


def test_trust_sentences_match_the_tables(trust):
    tables = trust["tables"]
    summary = tables["trust_by_method"].set_index("method")
    one = tables["significance_trust_one_sample"].set_index("method")
    est = trust_estimate(tables["trust_by_method"])
    sentences = _sentences(trust["words"][0])
    assert len(sentences) == len(summary)
    order = []
    for sentence in sentences:
        m = SENTENCE_TRUST.match(sentence)
        assert m, sentence
        method = NAME_OF[m["method"]]
        order.append(method)
        row, tests = summary.loc[method], one.loc[method]
        assert (m["mean"], m["lo"], m["hi"]) == (f"{row[est]:.2f}", f"{row['ci_low']:.2f}", f"{row['ci_high']:.2f}")
        assert (int(m["n"].replace(",", "")), int(m["w"]), int(m["i"])) == (
            row["n_answers"],
            row["n_workers"],
            row["n_images"],
        )
        assert m["pc"] == apa_p(tests["p_value_holm"])
        assert m["pw"] == apa_p(tests["wilcoxon_p_holm"]) and m["pt"] == apa_p(tests["t_p_holm"])
        assert float(m["W"]) == pytest.approx(row["wilcoxon_stat"], abs=0.05)
        assert m["t"] == f"{row['t_stat']:.2f}" and int(m["df"]) == row["n_workers"] - 1
        # The verdict follows the clustered test (Holm across the methods), not the per-worker ones.
        assert tests["p_value"] == row["p_value"]
        expected = (
            "not reliably different from zero"
            if not tests["p_value_holm"] < ALPHA
            else "reliably above zero"
            if row[est] > 0
            else "reliably below zero (in favour of the weaker model)"
        )
        assert m["verdict"] == expected
    assert order == list(summary.sort_values(est, ascending=False).index)
    assert "With Guided Grad-CAM" in sentences[0] and "reliably above zero" in sentences[0]

    pairs = tables["significance_trust_pairwise"]
    said = _sentences(trust["words"][1])
    assert len(said) == len(pairs) + 1 and "Holm-adjusted across the 3 pairs" in said[-1]
    for sentence, r in zip(said, pairs.to_dict("records"), strict=False):
        m = SENTENCE_PAIR.match(sentence)
        assert m, sentence
        a, b = NAME_OF[m["a"] or m["a0"]], NAME_OF[m["b"] or m["b0"]]
        sign = 1 if (a, b) == (r["method_a"], r["method_b"]) else -1
        assert {a, b} == {r["method_a"], r["method_b"]} and sign * r["mean_diff"] >= 0  # said as a positive
        low, high = sorted((sign * r["ci_low"], sign * r["ci_high"]))
        assert (m["d"], m["lo"], m["hi"]) == (f"{abs(r['mean_diff']):.2f}", f"{low:.2f}", f"{high:.2f}")
        assert int(m["n"]) == r["n_workers"] and int(m["df"]) == r["n_workers"] - 1
        assert m["pw"] == apa_p(r["wilcoxon_p_holm"]) and m["pt"] == apa_p(r["t_p_holm"])
        assert m["t"] == f"{sign * r['t_stat']:.2f}"
        assert (m["a"] is not None) == (r["wilcoxon_p_holm"] < ALPHA)
    ordinal = trust["words"][2]
    assert ordinal.startswith("An ordinal (proportional-odds) logistic model")
    side = tables["significance_trust_ordinal"].set_index("term").loc["stronger_left"]
    assert f"OR {side['odds_ratio']:.2f}" in ordinal and apa_p(side["p_value"]) in ordinal
    assert ("no reliable side bias" in ordinal) == (not side["p_value"] < ALPHA)


def test_ordinal_sentence_names_the_models_inference_when_it_says(trust):
    from analysis.words import trust_words

    tables = dict(trust["tables"])
    ordinal = tables["significance_trust_ordinal"].copy()
    ordinal.attrs = {**ordinal.attrs, "inference": "cluster-robust Wald t tests with 26 df"}
    tables["significance_trust_ordinal"] = ordinal
    said = trust_words(tables)[2]
    assert (
        "model of the score on the method and the stronger model's side (cluster-robust Wald t tests "
        "with 26 df) gave odds ratios" in said
    )


def _tables(p_holm: float, odds: float) -> dict[str, pd.DataFrame]:
    """An accuracy table and a GEE table of two methods with the given Holm p and odds ratio."""
    acc = pd.DataFrame(
        {
            "method": ["guided_gradcam", "guided_backprop"],
            "n": [400, 400],
            "n_workers": [40, 40],
            "n_images": [50, 50],
            "k": [260, 200],
            "accuracy": [0.65, 0.5],
            "ci_low": [0.6, 0.45],
            "ci_high": [0.7, 0.55],
            "p_value": [1e-5, 1.0],
        }
    )
    gee = pd.DataFrame(
        {
            "method_a": ["guided_gradcam"],
            "method_b": ["guided_backprop"],
            "log_or": [math.log(odds)],
            "se": [0.1],
            "odds_ratio": [odds],
            "ci_low": [odds * 0.8],
            "ci_high": [odds * 1.25],
            "z": [1.0],
            "p_value": [p_holm / 2],
            "p_holm": [p_holm],
            "significant": [p_holm < 0.05],
        }
    )
    return {"accuracy_by_method": acc, "significance_gee_method_comparisons": gee}


@pytest.mark.parametrize(
    "p_holm, odds, said",
    [
        (0.2, 3.0, "with no reliable difference from Guided Backprop (OR 3.00"),  # a large OR is not a finding
        (0.049, 1.5, "more than with Guided Backprop (OR 1.50, 95% CI [1.20, 1.88], p = .049)"),
        (0.01, 0.7, "less than with Guided Backprop (OR 0.70"),
        (0.05, 2.0, "with no reliable difference from Guided Backprop"),  # p = alpha is not below alpha
    ],
)
def test_verdicts_follow_the_test_not_the_estimate(p_holm, odds, said):
    first = class_discrimination_words(_tables(p_holm, odds))[0]
    assert said in first
    assert "With Guided Backprop, workers chose the right category in 50.0% of trials" in first
    assert "not reliably different from chance (p > .999)" in first


def test_without_clustered_comparisons_no_method_is_said_to_differ():
    tables = _tables(0.001, 3.0)
    del tables["significance_gee_method_comparisons"]
    words = " ".join(class_discrimination_words(tables))
    assert "more than" not in words and "less than" not in words and "OR " not in words
    assert "No clustered comparison between methods was run" in words
    assert "Wilson score intervals" in words and "ignore the clustering" in words


def _trust_summary(p_value: float | None, wilcoxon_p: float) -> dict[str, pd.DataFrame]:
    """A one-method trust summary whose clustered test (``p_value``; None: no such column)
    and Wilcoxon test disagree as given."""
    row = {
        "method": "gradcam",
        "n_answers": 400,
        "n_workers": 40,
        "n_images": 20,
        "mean": 0.3,
        "sd": 1.0,
        "worker_mean": 0.3,
        "worker_sd": 0.4,
        "ci_low": 0.05 if p_value is not None and p_value < ALPHA else -0.02,
        "ci_high": 0.55,
        "n_nonzero": 40,
        "wilcoxon_stat": 120.0,
        "wilcoxon_p": wilcoxon_p,
        "t_stat": 4.7,
        "t_p": wilcoxon_p / 2,
        "ci_method": "two-way cluster-robust (worker and image) t interval of the mean over answers",
    }
    if p_value is not None:
        row["p_value"] = p_value
    return {"trust_by_method": pd.DataFrame([row])}


def test_trust_verdict_follows_the_clustered_test():
    from analysis.words import trust_words

    # The per-worker tests (which ignore the images) reject, the clustered one does not.
    first, *_, last = trust_words(_trust_summary(0.2, 0.001))
    assert "0.30 (95% CI [-0.02, 0.55]" in first and "not reliably different from zero" in first
    assert "(clustered t test, p = .200; per-worker means, ignoring the images: Wilcoxon signed-rank W = 120" in first
    assert "respects the clustering of answers by worker and image" in last
    assert "they ignore the clustering by image" in last and "not adjusted for multiple comparisons" in last
    first = trust_words(_trust_summary(0.01, 0.3))[0]
    assert "reliably above zero (clustered t test, p = .010;" in first


def test_trust_verdict_without_the_clustered_test_follows_wilcoxon():
    from analysis.words import trust_words

    first, *_, last = trust_words(_trust_summary(None, 0.001))
    assert "reliably above zero (Wilcoxon signed-rank W = 120, p = .001; t(39) = 4.70, p < .001)" in first
    assert "clustered t test" not in first and "respects the clustering" not in last
    assert "the tests ignore the clustering by image" in last
    assert "not reliably different" in trust_words(_trust_summary(None, 0.3))[0]


def test_words_are_in_the_report_and_in_their_file(cd):
    import html

    raw = cd["html"].read_text(encoding="utf-8")
    # The HTML keeps "p < .001" / "p = .012" on one line.
    assert re.search(r"p\u00a0(&lt;|=)\u00a0\.\d{3}", raw)
    page = html.unescape(raw).replace("\u00a0", " ")
    for paragraph in cd["words"]:
        assert f"<p>{paragraph}</p>" in page
    text = (cd["html"].parent / "results_in_words.md").read_text(encoding="utf-8")
    assert "\u00a0" not in text and all(p in text for p in cd["words"])


def test_method_names_in_words():
    assert method_name("guided_gradcam") == "Guided Grad-CAM" and method_name("deconv_gradcam") == "Deconvnet Grad-CAM"
    assert method_name("my_method") == "my_method"
    try:  # stimuli/demo.py (needs torch) names the demo's methods the same way
        from stimuli.demo import METHOD_TITLES
    except ImportError:
        return
    assert all(METHOD_NAMES[k] == v for k, v in METHOD_TITLES.items())


# --------------------------------------------------------------------------------------
# The README's example


def readme_example(workdir: Path) -> list[str]:
    """The "Results in words" of ``camstudy analyze`` on an export simulated with the paper's
    accuracies (48 workers x 40 trials, within design, seed 2017): the README's example."""
    from camstudy.cli import main

    df = simulate_class_discrimination(
        48, 40, PAPER, seed=2017, design="within", attention_fail_rate=0.05, fast_rate=0.05, incomplete_rate=0.05
    )
    export = workdir / "paper.csv"
    df.to_csv(export, index=False)
    with contextlib.redirect_stdout(io.StringIO()):  # the command's own two lines are not the example
        assert main(["analyze", str(export), "--out", str(workdir / "report"), "--n-boot", "200"]) == 0
    text = (workdir / "report" / "results_in_words.md").read_text(encoding="utf-8")
    return [p for p in text.split("\n\n")[1:] if p.strip()]


def test_readme_shows_the_simulated_example(tmp_path):
    paragraphs = [p.strip() for p in readme_example(tmp_path)]
    readme = re.sub(r"\s+", " ", README.read_text(encoding="utf-8").replace("\n> ", "\n"))
    missing = [p for p in paragraphs if p not in readme]
    assert not missing, (
        "README.md's analysis example is out of date; regenerate it with "
        "`python -m tests.analysis.test_report_words`:\n\n" + "\n\n".join(paragraphs)
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        paragraphs = readme_example(Path(tmp))
    sys.stdout.write("\n\n".join(f"> {p.strip()}" for p in paragraphs) + "\n")
