"""``camstudy demo``: the offline stronger/weaker pair explained on the bundled photos.

Renders Grad-CAM, Guided Backprop and Guided Grad-CAM of each demo image's labelled
classes (both classes of the cat|dog composites) for both models into ``--out``, writes a
side-by-side sheet and a JSON manifest, and prints where the sheet is.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from camstudy.version import code_version
from gradcam import explain
from gradcam.render import render_methods, to_pil
from stimuli.demo_set import DemoImage, demo_sheet_images
from stimuli.explain_cli import top5
from stimuli.images import resolve_device
from stimuli.manifest import grid_text
from stimuli.models import OFFLINE_PAIR, LoadedModel, load_model

DEMO_METHODS = ("gradcam", "guided_backprop", "guided_gradcam")
METHOD_TITLES = {"gradcam": "Grad-CAM", "guided_backprop": "Guided Backprop", "guided_gradcam": "Guided Grad-CAM"}


def explain_image(model: LoadedModel, item: DemoImage, device: torch.device, methods=DEMO_METHODS):
    """Explain every labelled class of one image in one engine call (a K axis of classes)."""
    pixels = model.preprocess.pixels(item.image)[None]  # one resize for input and overlay
    x = model.preprocess.normalize(pixels).to(device)
    photo = pixels.to(device).float().div_(255)
    ex = explain(model.module, x, torch.tensor([item.labels], device=device), layer=model.layer, methods=methods)
    return ex, render_methods(ex, photo)


def run_demo(args: argparse.Namespace) -> int:
    from gradcam.render import sheet

    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = demo_sheet_images()
    models = {role: load_model(name, device=device) for role, name in OFFLINE_PAIR.items()}
    rows, titles, manifest = [], [], []
    started = time.perf_counter()
    for item in items:
        item.image.save(out / f"{item.id}.photo.png")
        per_model = {role: explain_image(m, item, device) for role, m in models.items()}
        for k, label in enumerate(item.labels):
            row = [models["stronger"].preprocess.display(item.image)]
            for role, m in models.items():
                ex, rendered = per_model[role]
                for method in DEMO_METHODS:
                    file = f"{item.id}.{label}.{m.name}.{method}.png"
                    img = to_pil(rendered[method][0, k])
                    img.save(out / file)
                    row.append(img)
                    manifest.append(
                        {
                            "file": file,
                            "image_id": item.id,
                            "image_source": item.source,
                            "model": m.name,
                            "role": role,
                            "weights_sha256": m.weights_sha256,
                            "layer": ex.layer,
                            "layer_grid": grid_text(ex.layer_grid),
                            "layer_layout": ex.layer_layout or "",
                            "method": method,
                            "target_class": label,
                            "target_name": m.class_names[label],
                            "top5": top5(ex.logits, m.class_names)[0],
                            "code_version": code_version(),
                        }
                    )
            rows.append(row)
            titles.append(f"{item.id}\nclass: {models['stronger'].class_names[label]}")
    cols = ["photo"] + [f"{role}: {METHOD_TITLES[meth]}" for role in models for meth in DEMO_METHODS]
    sheet_path = out / "sheet.png"
    sheet(rows, cols, titles).save(sheet_path)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    elapsed = time.perf_counter() - started
    names = ", ".join(f"{role} = {m.name}" for role, m in models.items())
    print(f"explained {len(items)} images with {names} on {device} in {elapsed:.1f} s")
    print(f"{len(manifest)} stimuli and manifest.json in {out}/")
    print(f"sheet: {sheet_path}")
    return 0
