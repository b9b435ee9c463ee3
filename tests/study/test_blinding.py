"""Blinding: nothing the browser receives about a stimulus predicts the answer.

The adversary is a worker who records everything their browser gets for a whole plan (the
plan JSON, each image's URL, headers and bytes) and fits a simple classifier to it. Over
many participants, the classifier's held-out accuracy must stay inside the binomial 95%
band of chance. The tiny test stimuli leak like the real ones did: the stronger model's
PNGs are larger, and the files are named after model, method and category.
"""

from __future__ import annotations

import io
import math
import random
import re

import numpy as np
import pytest
from PIL import Image

from study.blinding import BUCKET, PRACTICE, image_token, pad_png, read_image_token, served_sizes
from study.models import Participant, PlanEntry, Stimulus
from tests.study.test_api import enroll, headers, signed, worker

PARTICIPANTS = 60  # about 240 class-discrimination and 200 trust trials


def _png(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_padding_keeps_the_pixels_and_reaches_the_size_exactly():
    data = _png(1)
    for target in (len(data) + 12, len(data) + 13, BUCKET * 3):
        padded = pad_png(data, target)
        assert len(padded) == target
        a, b = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(padded))
        b.load()  # a decoder reads through the padding chunk (its CRC is checked)
        assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError):
        pad_png(data, len(data) + 11)  # no room for a chunk
    with pytest.raises(ValueError):
        pad_png(b"not a png", 10_000)


def test_stimuli_shown_together_share_one_size():
    sizes = {"a": 100, "b": 5000, "c": 9000, "d": 300, "e": 4090}
    out = served_sizes(sizes, [["a", "b"], ["b", "c"], ["d"], ["e"]])
    assert out["a"] == out["b"] == out["c"] == 3 * BUCKET  # one connected group: its largest, rounded up
    assert out["d"] == BUCKET and out["e"] == 2 * BUCKET  # room for the chunk's 12 bytes
    assert all(v % BUCKET == 0 and v >= sizes[k] + 12 for k, v in out.items())


def test_created_studies_pad_each_scale_per_group(app, stimuli_dir):
    """create_study pads the 1x files and, from their own sizes, the 2x files: at each scale
    the stimuli of an item share one served size, room for the padding chunk included."""
    from study.models import Item

    with app.extensions["camstudy.sessions"]() as s:
        stimuli = {(st.study_id, st.stimulus_id): st for st in s.query(Stimulus)}
        items = s.query(Item).all()
    assert stimuli and items
    for st in stimuli.values():
        assert st.file_2x == st.file.removesuffix(".png") + "@2x.png"
        assert st.served_size_2x % BUCKET == 0
        assert st.served_size_2x >= (stimuli_dir / st.file_2x).stat().st_size + 12
    for it in items:
        shown = [stimuli[(it.study_id, sid)] for sid in it.stimulus_ids]
        assert len({st.served_size for st in shown}) == 1 and len({st.served_size_2x for st in shown}) == 1


def _observe(client, url: str, url_2x: str) -> dict:
    """Everything the browser learns of one image, at 1x and at 2x (a dense screen's srcset
    fetches the 2x file instead)."""
    r, r2 = client.get(url), client.get(url_2x)
    assert r.status_code == 200 and r2.status_code == 200
    return {
        "url": url,
        "headers": {k.lower(): v for k, v in r.headers.items()},
        "size": len(r.get_data()),
        "headers_2x": {k.lower(): v for k, v in r2.headers.items()},
        "size_2x": len(r2.get_data()),
    }


def _blob(obs: dict) -> str:
    return (obs["url"] + " " + " ".join(f"{k}: {v}" for k, v in obs["headers"].items())).lower()


def _trailing_int(url: str) -> float:
    m = re.search(r"(\d+)$", url)
    return float(m.group(1)) if m else -1.0


def _http_date(value: str | None) -> float:
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(value).timestamp() if value else 0.0


def _etag_number(value: str | None) -> float:
    digits = re.sub(r"\D", "", value or "")
    return float(int(digits[:15])) if digits else 0.0


def _features_cd(obs: dict, options: list[str]) -> list[float]:
    """Features of a class-discrimination trial, to predict whether the correct category is
    the alphabetically first option (which option is shown first is random)."""
    first, second = sorted(options)
    blob = _blob(obs)
    n = _trailing_int(obs["url"])
    return [
        float(blob.count(first) - blob.count(second)),
        n % 2 if n >= 0 else -1.0,
        n,
        float(obs["size"]),
        float(obs["size_2x"]),
        _etag_number(obs["headers"].get("etag")),
        _http_date(obs["headers"].get("last-modified")),
    ]


def _features_trust(left: dict, right: dict) -> list[float]:
    """Features of a trust trial, to predict whether the stronger model is on the left."""
    lb, rb = _blob(left), _blob(right)
    return [
        float("stronger" in lb) - float("stronger" in rb),
        float("weaker" in lb) - float("weaker" in rb),
        _trailing_int(left["url"]) - _trailing_int(right["url"]),
        float(left["size"] - right["size"]),
        float(left["size_2x"] - right["size_2x"]),
        float(left["url"] < right["url"]),
        float(len(left["url"]) - len(right["url"])),
        _etag_number(left["headers"].get("etag")) - _etag_number(right["headers"].get("etag")),
        _http_date(left["headers"].get("last-modified")) - _http_date(right["headers"].get("last-modified")),
        float(left["headers"] != right["headers"]),
    ]


def _fit_stump(x: np.ndarray, y: np.ndarray) -> tuple[int, float, bool]:
    """The (feature, threshold, sign) with the best accuracy on the training rows."""
    best, rule = -1.0, (0, 0.0, True)
    for j in range(x.shape[1]):
        for t in np.unique(x[:, j]):
            pred = x[:, j] > t
            for sign in (True, False):
                acc = float(np.mean((pred if sign else ~pred) == y))
                if acc > best:
                    best, rule = acc, (j, float(t), sign)
    return rule


def held_out_accuracy(rows: list[tuple[int, list[float], bool]]) -> tuple[int, int]:
    """Two-fold cross-validated decision stump, folds split by participant (so the
    classifier never sees the participant it predicts): (correct, n)."""
    correct = 0
    for fold in (0, 1):
        train = [(f, y) for p, f, y in rows if p % 2 != fold]
        test = [(f, y) for p, f, y in rows if p % 2 == fold]
        x, y = np.array([f for f, _ in train]), np.array([y for _, y in train])
        j, t, sign = _fit_stump(x, y)
        for f, truth in test:
            pred = f[j] > t
            correct += int((pred if sign else not pred) == truth)
    return correct, len(rows)


def chance_band(n: int) -> float:
    """The upper end of the binomial 95% band around 50% for n trials."""
    return 0.5 + 1.96 * math.sqrt(0.25 / n)


@pytest.fixture
def seeded_enrollment(monkeypatch):
    """Enrollment draws its seeds from a fixed stream, so each classifier test sees the same
    plans every run (a band at 95% would otherwise fail one run in 40 by chance)."""
    import secrets
    from types import SimpleNamespace

    import study.enroll

    rng = random.Random(2026)
    monkeypatch.setattr(study.enroll, "secrets", SimpleNamespace(randbelow=rng.randrange, token_hex=secrets.token_hex))


def _plans(app, slug: str, n: int):
    """Enroll n participants and observe every image of their plans; yields (participant,
    trial, observations, plan entry layout, item truth)."""
    sessions = app.extensions["camstudy.sessions"]
    app.config["ENROLL_RATE_PER_MINUTE"] = 10**6
    for k in range(n):
        c = app.test_client()
        enroll(c, slug)
        plan = c.get(f"/api/s/{slug}/plan", headers=headers(c, app, slug)).get_json()
        with sessions() as s:
            pid = s.query(Participant).order_by(Participant.id.desc()).first().id
            entries = {e.position: e for e in s.query(PlanEntry).filter_by(participant_id=pid)}
            roles = {st.stimulus_id: st.model_role for st in s.query(Stimulus)}
            truth = {
                e.position: (e.item.correct_answer, e.layout, [roles[i] for i in e.layout["stimuli"]], e.item)
                for e in entries.values()
            }
        for t in plan["trials"]:
            assert t["images_2x"] == [f"{u}/2x" for u in t["images"]]
            obs = [_observe(c, u, u2) for u, u2 in zip(t["images"], t["images_2x"], strict=True)]
            yield k, t, obs, truth[t["position"]]


def test_an_adversary_cannot_predict_class_discrimination_answers(app, seeded_enrollment):
    slug = app.config["STUDIES"]["class_discrimination"]
    rows = []
    for k, t, (obs,), (correct, _layout, _roles, item) in _plans(app, slug, PARTICIPANTS):
        if item.is_attention_check:
            continue
        rows.append((k, _features_cd(obs, t["options"]), correct == sorted(t["options"])[0]))
        assert "content-disposition" not in obs["headers"] and "etag" not in obs["headers"]
        assert "last-modified" not in obs["headers"]
    correct, n = held_out_accuracy(rows)
    assert n >= 200
    assert correct / n <= chance_band(n), f"{correct}/{n} predicted from what the browser receives"


def test_an_adversary_cannot_tell_which_side_is_the_stronger_model(app, seeded_enrollment):
    slug = app.config["STUDIES"]["trust"]
    rows = []
    for k, _t, obs, (_c, layout, roles, item) in _plans(app, slug, PARTICIPANTS):
        if item.is_attention_check or set(roles) != {"stronger", "weaker"}:
            continue
        left, right = obs
        assert left["size"] == right["size"], "the two images of a trial differ in size"
        assert left["size_2x"] == right["size_2x"], "the two 2x images of a trial differ in size"
        assert left["headers"] == right["headers"], "the two images of a trial differ in their headers"
        assert left["headers_2x"] == right["headers_2x"], "the two 2x images of a trial differ in their headers"
        rows.append((k, _features_trust(left, right), layout["model_1"] == "stronger"))
    correct, n = held_out_accuracy(rows)
    assert n >= 150
    assert correct / n <= chance_band(n), f"{correct}/{n} predicted from what the browser receives"


def test_image_urls_are_signed_for_their_participant(app):
    slug = app.config["STUDIES"]["class_discrimination"]
    other_study = app.config["STUDIES"]["trust"]
    a = app.test_client()
    enroll(a, slug)
    url = a.get(f"/api/s/{slug}/plan", headers=headers(a, app, slug)).get_json()["trials"][0]["images"][0]
    token = url.rsplit("/", 1)[1]
    stranger = app.test_client()
    assert stranger.get(url).status_code == 200  # the URL itself is the key (an <img> sends no header)
    body, sig = token.rsplit(".", 1)
    forged = [
        f"{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",  # a changed signature
        token.replace(body, body[:-1] + ("A" if body[-1] != "A" else "B")),  # a changed payload
        "1",
        "2",
        "-1",
        "WzEsImFiYyJd",  # guessed ids, an unsigned payload
    ]
    for f in forged:
        assert stranger.get(f"/s/{slug}/img/{f}").status_code == 404, f
        assert stranger.get(f"/s/{slug}/img/{f}/2x").status_code == 404, f
    assert stranger.get(f"/s/{other_study}/img/{token}").status_code == 404  # not a participant of that study
    assert stranger.get(f"/s/{other_study}/img/{token}/2x").status_code == 404
    pid = read_image_token("test-secret", token)[0]
    for position, slot in ((99, 0), (0, 1), (0, -1), (PRACTICE, 5)):  # genuinely signed, but no such image
        assert stranger.get(f"/s/{slug}/img/{image_token('test-secret', pid, position, slot)}").status_code == 404


def test_the_2x_image_is_the_same_stimulus_at_twice_the_size(app):
    """Every image of a plan (the worked example and the practice too) has a 2x URL whose
    pixels are twice the 1x image's, padded to its own served size."""
    from PIL import Image

    slug = app.config["STUDIES"]["trust"]
    c = app.test_client()
    enroll(c, slug)
    plan = c.get(f"/api/s/{slug}/plan", headers=headers(c, app, slug)).get_json()
    shown = plan["trials"] + [t for t in (plan["example"], plan["practice"]) if t]
    assert len(shown) > 2 and all(len(t["images_2x"]) == len(t["images"]) for t in shown)
    for t in shown:
        for url, url_2x in zip(t["images"], t["images_2x"], strict=True):
            one, two = c.get(url), c.get(url_2x)
            assert two.status_code == 200 and two.mimetype == "image/png"
            assert dict(two.headers).keys() == dict(one.headers).keys()
            w, h = Image.open(io.BytesIO(one.get_data())).size
            assert Image.open(io.BytesIO(two.get_data())).size == (2 * w, 2 * h)


def test_test_modes_never_show_the_live_code(app):
    slug = app.config["STUDIES"]["class_discrimination"]
    for mode in ("sandbox", "debug"):
        c = app.test_client()
        enroll(c, slug, {**worker(), **signed(app, slug, mode)})
        h = headers(c, app, slug)
        plan = c.get(f"/api/s/{slug}/plan", headers=h).get_json()
        for t in plan["trials"]:
            c.post(
                f"/api/s/{slug}/answers",
                headers=h,
                json={"position": t["position"], "answer": t["options"][0], "rt_ms": 900},
            )
        c.post(f"/api/s/{slug}/complete", headers=h, json={})
        c.post(f"/s/{slug}/questionnaire", data={"csrf_token": _csrf(c, f"/s/{slug}/debrief")})
        page = c.get(f"/s/{slug}/debrief").get_data(as_text=True)
        assert "DONE123" not in page and "SCREEN9" not in page and f"TEST-{mode.upper()}" in page


def _csrf(client, path):
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
