"""The stimulus build end to end on tiny fixtures: CSV source, colour models, all methods.

Checks rendering, the manifest, resume, shards + merge, an interrupted run, and the errors
a user can cause.
"""

import csv
import hashlib
import json
import shutil

import pytest
from PIL import Image

from camstudy.cli import main
from camstudy.errors import UserError
from stimuli import build as build_mod
from stimuli import writer as writer_mod
from stimuli.build import build
from stimuli.config import load_config
from stimuli.manifest import FIELDS, read_manifest
from stimuli.merge import merge
from tests.stimuli.conftest import make_study


def test_build_renders_every_planned_stimulus(study):
    cfg = load_config(study)
    summary = build(cfg, cfg.out, progress=False)
    out = cfg.out
    manifest = read_manifest(out)
    rows = manifest["rows"]
    plan = json.loads((out / "plan.json").read_text())
    used = {s for it in plan["items"] for s in it["stimulus_ids"]}
    ids = {r["stimulus_id"] for r in rows}
    assert used <= ids and summary["stimuli"] == len(rows) == summary["rendered"]
    for r in rows:
        assert set(r) == set(FIELDS)
        with Image.open(out / r["file"]) as im:
            assert im.size == (40, 40) and im.mode == "RGB"
        with Image.open(out / r["file_2x"]) as im:  # decodes, exactly twice the size
            im.load()
            assert im.size == (80, 80) and im.mode == "RGB"
        assert r["file_2x"] == r["file"].removesuffix(".png") + "@2x.png"
        assert r["sha256_2x"] == hashlib.sha256((out / r["file_2x"]).read_bytes()).hexdigest()
        # The 2x of a gradient image is upsampled; a photo (alone or under Grad-CAM) comes
        # from the source photo, here 48 px across, so upsampled from it as well.
        want = (
            "upsampled"
            if r["method"] in ("guided_backprop", "guided_gradcam", "deconvnet", "deconv_gradcam")
            else "source_upsampled"
        )
        assert r["how_2x"] == want
        if r["method"] == "photo":
            assert r["structure"] is None
        else:
            assert set(r["structure"]) == {
                "hf_share",
                "periodic",
                "edge_corr",
                "contrast",
                "faded",
                "degenerate",
                "why",
            }
            assert not r["structure"]["degenerate"], r  # the colour models' explanations show the squares
    assert manifest["structure"]["thresholds"]["pair_share"] == 0.5
    assert {(p["model_role"], p["method"]) for p in manifest["structure"]["pairs"]} == {
        (role, m) for role in ("stronger", "weaker") for m in cfg.methods
    }
    assert summary["degenerate_pairs"] == []
    expl = [r for r in rows if r["method"] != "photo"]
    assert {r["method"] for r in expl} == set(cfg.methods)
    assert {r["model_role"] for r in expl} == {"stronger", "weaker"}
    for r in expl:
        assert r["target_name"] == r["category"]  # colour models: the category's own class
        assert len(r["weights_sha256"]) == 64 and r["layer"] == "relu" and r["top5"][0]["probability"] > 0
    # The CSV mirrors the JSON.
    csv_lines = (out / "manifest.csv").read_text().splitlines()
    assert len(csv_lines) == len(rows) + 1 and csv_lines[0].split(",")[0] == "stimulus_id"
    with open(out / "manifest.csv", newline="") as f:
        by_id = {r["stimulus_id"]: r for r in csv.DictReader(f)}
    for r in rows:
        assert json.loads(by_id[r["stimulus_id"]]["structure"]) == r["structure"]
        assert by_id[r["stimulus_id"]]["file_2x"] == r["file_2x"]
    report = (out / "plan_report.csv").read_text()
    assert "has 1 categories; needs exactly 2" in report
    assert not (out / "manifest.partial.jsonl").exists()


def test_rendering_beside_or_between_engine_calls_writes_the_same_files(study):
    """The GPU schedule (workers beside the engine) and the CPU one (between its calls)."""
    cfg = load_config(study)
    beside, between = study.parent / "beside", study.parent / "between"
    build(cfg, beside, progress=False, overlap=True)
    build(cfg, between, progress=False, overlap=False)
    rows = read_manifest(beside)["rows"]
    assert rows == read_manifest(between)["rows"]
    for r in rows:
        assert (beside / r["file"]).read_bytes() == (between / r["file"]).read_bytes()


def test_resume_skips_what_exists_and_repairs_what_does_not(study):
    cfg = load_config(study)
    build(cfg, cfg.out, progress=False)
    first = read_manifest(cfg.out)["rows"]
    again = build(cfg, cfg.out, progress=False)
    assert again["rendered"] == 0 and again["reused"] == len(first)
    (cfg.out / first[0]["file"]).unlink()
    (cfg.out / first[-1]["file"]).write_bytes(b"corrupt")
    (cfg.out / first[1]["file_2x"]).write_bytes(b"corrupt")  # a changed 2x file counts too
    repaired = build(cfg, cfg.out, progress=False)
    assert 3 <= repaired["rendered"] < len(first)
    assert read_manifest(cfg.out)["rows"] == first


@pytest.mark.parametrize("overlap", [True, False])
def test_interrupted_run_leaves_no_half_manifest_and_resumes(study, monkeypatch, overlap):
    cfg = load_config(study)
    real = writer_mod.encode_and_write
    calls = {"n": 0}

    def flaky(out, row, pixels, pixels_2x):
        calls["n"] += 1
        if calls["n"] > 45:  # a few (batch, model) jobs complete, then writes fail
            raise OSError("disk full (simulated)")
        return real(out, row, pixels, pixels_2x)

    monkeypatch.setattr(writer_mod, "encode_and_write", flaky)
    with pytest.raises(OSError, match="disk full"):
        build(cfg, cfg.out, progress=False, overlap=overlap)
    assert not (cfg.out / "manifest.json").exists() and not (cfg.out / "manifest.csv").exists()
    partial = (cfg.out / "manifest.partial.jsonl").read_text().splitlines()
    assert 0 < len(partial) <= 45 and all(json.loads(line)["sha256"] for line in partial)
    monkeypatch.setattr(writer_mod, "encode_and_write", real)
    done = build(cfg, cfg.out, progress=False)
    assert done["reused"] >= 1 and done["rendered"] >= 1
    fresh = study.parent / "fresh"
    build(cfg, fresh, progress=False)
    assert read_manifest(cfg.out)["rows"] == read_manifest(fresh)["rows"]


def test_two_shards_merged_equal_one_run(study):
    cfg = load_config(study)
    one = study.parent / "one"
    build(cfg, one, progress=False)
    parts = [study.parent / f"shard{i}" for i in range(2)]
    sizes = [build(cfg, p, (i, 2), progress=False)["stimuli"] for i, p in enumerate(parts)]
    assert all(sizes) and sum(sizes) == len(read_manifest(one)["rows"])
    merged = study.parent / "merged"
    merge(parts, merged)
    assert read_manifest(merged)["rows"] == read_manifest(one)["rows"]
    for r in read_manifest(merged)["rows"]:
        assert (merged / r["file"]).read_bytes() == (one / r["file"]).read_bytes()
    with pytest.raises(UserError, match="each shard 0..N-1 exactly once"):
        merge(parts[:1], study.parent / "partial")


def test_output_folder_of_another_config_is_refused(study, capsys):
    cfg = load_config(study)
    build(cfg, cfg.out, progress=False)
    study.write_text(study.read_text().replace("seed = 3", "seed = 4"))
    rc = main(["stimuli", "build", str(study), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "holds stimuli from a different config" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('name = "tests.stimuli.tiny_models:weak"', 'name = "nonet"'), "unknown model 'nonet'"),
        (lambda t: t.replace("seed = 3", "seed = 3\nsed = 4"), "sed: unknown key"),
        (lambda t: t.replace("batch_size = 2", 'batch_size = "two"'), "batch_size: must be an integer >= 1"),
    ],
)
def test_config_errors_exit_2(study, capsys, edit, message):
    study.write_text(edit(study.read_text()))
    rc = main(["stimuli", "build", str(study), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not (study.parent / "out" / "manifest.json").exists()


def test_missing_image_and_bad_shard(study, capsys):
    (study.parent / "images" / "single0.png").unlink()
    rc = main(["stimuli", "build", str(study), "--quiet"])
    assert rc == 2 and "single0.png" in capsys.readouterr().err
    rc = main(["stimuli", "build", str(study), "--shard", "2/2"])
    assert rc == 2 and "need 0 <= I < N" in capsys.readouterr().err


def test_cli_build_prints_plan_and_manifest(study, capsys):
    rc = main(["stimuli", "build", str(study), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "| class_discrimination | check | none | 2 |" in out and "manifest:" in out
    shutil.rmtree(study.parent / "out")


def test_predictions_come_from_the_engine_calls(study, monkeypatch):
    """No separate prediction pass: the engine calls' logits plan the study; a candidate the
    plan drops (here one category of a composite that only trust uses) leaves no file."""

    def no_pass(*args, **kwargs):
        raise AssertionError("a separate prediction pass ran")

    monkeypatch.setattr(build_mod, "predict", no_pass)
    cfg = load_config(study)
    summary = build(cfg, cfg.out, progress=False)
    rows = read_manifest(cfg.out)["rows"]
    assert summary["explained_unused"] > 0
    on_disk = {p.relative_to(cfg.out).as_posix() for p in (cfg.out / "stimuli").rglob("*.png")}
    assert on_disk == {r["file"] for r in rows} | {r["file_2x"] for r in rows}
    preds = json.loads((cfg.out / "predictions.json").read_text())["predictions"]
    for r in rows:
        if r["method"] == "photo":
            continue
        p = preds[r["model_role"]][r["image_id"]]
        assert p["best_class"][r["category"]] == r["target_class"]
        assert [t["index"] for t in r["top5"]] == [c for c, _ in p["top5"]]
    again = build(cfg, cfg.out, progress=False)  # predictions.json: nothing to recompute
    assert again["rendered"] == 0 and again["engine_seconds"] == 0 and again["forward_seconds"] == 0
    assert read_manifest(cfg.out)["rows"] == rows


def test_trust_cap_predicts_first_and_explains_only_planned(study, monkeypatch):
    study.write_text(study.read_text().replace("[tasks.trust]\n", "[tasks.trust]\nmax_images = 2\n"))
    cfg = load_config(study)
    calls = {"n": 0}
    real = build_mod.predict

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(build_mod, "predict", counted)
    one = study.parent / "one"
    summary = build(cfg, one, progress=False)
    assert calls["n"] == 1 and summary["explained_unused"] == 0
    plan = json.loads((one / "plan.json").read_text())
    assert sum(it["task"] == "trust" and not it["is_attention_check"] for it in plan["items"]) == 2 * (
        len(cfg.methods) + 1
    )
    used = {s for it in plan["items"] for s in it["stimulus_ids"]}
    assert used <= {r["stimulus_id"] for r in read_manifest(one)["rows"]}
    parts = [study.parent / f"shard{i}" for i in range(2)]
    for i, p in enumerate(parts):
        build(cfg, p, (i, 2), progress=False)
    merge(parts, study.parent / "merged")
    assert read_manifest(study.parent / "merged")["rows"] == read_manifest(one)["rows"]


def test_a_degenerate_pair_warns_once_and_is_recorded(tmp_path, capsys):
    """The checkerboard model: its Deconvnet is the same period-2 pattern for every photo."""
    cfg = load_config(make_study(tmp_path, weaker="checker", methods=["deconvnet", "gradcam"]))
    summary = build(cfg, cfg.out, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "warning: deconvnet of the weaker model (tests.stimuli.tiny_models:checker) is degenerate: "
    )
    assert "allow_degenerate = true" in err[0]
    assert [(p["model_role"], p["method"]) for p in summary["degenerate_pairs"]] == [("weaker", "deconvnet")]
    assert json.loads((cfg.out / "build.json").read_text())["degenerate_pairs"] == summary["degenerate_pairs"]
    pairs = {(p["model_role"], p["method"]): p for p in read_manifest(cfg.out)["structure"]["pairs"]}
    assert len(pairs) == 4 and [k for k, p in pairs.items() if p["degenerate"]] == [("weaker", "deconvnet")]
    bad = pairs[("weaker", "deconvnet")]
    assert bad["degenerate_stimuli"] == bad["stimuli"] and bad["median"]["periodic"] > 0.5
    # Shards see only their own rows; the merge decides over all of them, and says so once.
    parts = [tmp_path / f"shard{i}" for i in range(2)]
    for i, p in enumerate(parts):
        build(cfg, p, (i, 2), progress=False)
    capsys.readouterr()
    merged = merge(parts, tmp_path / "merged")
    assert merged["degenerate_pairs"] == summary["degenerate_pairs"]
    assert read_manifest(tmp_path / "merged")["structure"] == read_manifest(cfg.out)["structure"]
    assert capsys.readouterr().err.count("warning: ") == 1
