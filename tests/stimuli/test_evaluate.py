"""``camstudy stimuli evaluate`` on the tiny colour study (metrics themselves: test_metrics.py)."""

import csv

from camstudy.cli import main


def test_evaluate_writes_csv_and_table(study, capsys):
    out = study.parent / "eval.csv"
    rc = main(["stimuli", "evaluate", str(study), "--patch", "8", "--stride", "8", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "| stronger tests.stimuli.tiny_models:strong | gradcam |" in printed
    rows = list(csv.DictReader(out.open()))
    metrics = {(r["model_role"], r["method"], r["metric"]) for r in rows}
    for role in ("stronger", "weaker"):
        for metric in (
            "faithfulness_spearman",
            "pointing_game",
            "box_localization",
            "sanity_top_layer_spearman",
            "sanity_full_ssim",
        ):
            assert (role, "gradcam", metric) in metrics
        assert (role, "(chance)", "pointing_game") in metrics
    pointing = {
        r["model_role"]: float(r["mean"]) for r in rows if r["method"] == "gradcam" and r["metric"] == "pointing_game"
    }
    assert all(v >= 0.75 for v in pointing.values()), pointing  # colour models look at their colour
    n = {int(r["n"]) for r in rows if r["metric"] == "pointing_game" and r["method"] == "gradcam"}
    assert n == {8}  # four composites x two categories, each with its half's box


def test_evaluate_needs_a_build_folder_or_config(tmp_path, capsys):
    rc = main(["stimuli", "evaluate", str(tmp_path)])
    assert rc == 2 and "not a stimuli build folder" in capsys.readouterr().err
    rc = main(["stimuli", "evaluate", str(tmp_path / "none.toml")])
    assert rc == 2 and "config file not found" in capsys.readouterr().err
