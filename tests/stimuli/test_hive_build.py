"""HIVE distinction through the real build: each model's explanations of its own top-4
classes, resolved from its logits, named in the manifest as the plan names them."""

import json

from PIL import Image

from stimuli.build import build
from stimuli.config import load_config
from stimuli.manifest import read_manifest
from tests.stimuli.conftest import make_study


def test_rank_targets_explain_each_models_own_ranked_classes(tmp_path):
    cfg = load_config(make_study(tmp_path, methods=["gradcam", "guided_backprop"], hive=True))
    build(cfg, cfg.out, progress=False)
    rows = {r["stimulus_id"]: r for r in read_manifest(cfg.out)["rows"]}
    plan = json.loads((cfg.out / "plan.json").read_text())
    preds = json.loads((cfg.out / "predictions.json").read_text())["predictions"]
    items = [it for it in plan["items"] if it["task"] == "hive_distinction"]
    trials = [it for it in items if not it["is_attention_check"]]
    assert len(trials) == 8 * 2 * 2  # every labelled image (4 classes: the top-4 names are distinct)
    for it in trials:
        shown = [rows[s] for s in it["stimulus_ids"]]
        ranked = [c for c, _ in preds[it["model_role"]][it["image_id"]]["top5"][:4]]
        assert [r["category"] for r in shown] == ["top1", "top2", "top3", "top4"]
        assert [r["target_class"] for r in shown] == ranked
        assert [r["target_name"] for r in shown] == it["options"] and it["correct_answer"] == it["options"][0]
        assert {r["model_role"] for r in shown} == {it["model_role"]}
    # The predicted class's Grad-CAM is not a runner-up's (the tiny colour models' lowest
    # classes can both clamp to an all-zero map, so only the first is compared).
    for it in (t for t in trials if t["method"] == "gradcam"):
        pixels = [Image.open(cfg.out / rows[s]["file"]).tobytes() for s in it["stimulus_ids"]]
        assert pixels[0] != pixels[1], it["item_id"]
    checks = [it for it in items if it["is_attention_check"]]
    assert len(checks) == 2 and all(s in rows for it in checks for s in it["stimulus_ids"])
