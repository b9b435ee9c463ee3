"""The demo's studies as a participant sees them, in Chromium, on the real offline
models' stimuli: consent text from the config, the worked example, the practice and a
trial, on a desktop and on a phone. Every stimulus shown must be a file of the build that
the build scored as not degenerate (see stimuli.structure), and a phone must get the 2x
file.

``CAMSTUDY_E2E_SHOTS=DIR`` saves the screenshots the README shows (``docs/screenshots``):
the instructions and a trial of each study, desktop and phone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from study.app import create_app
from study.db import make_engine, session_factory
from study.links import participant_links
from study.models import Study
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, MISSING, REQUIRE, Server, Watch

pytest.importorskip("efficientnet_lite_pytorch", reason="the offline demo pair is not installed")
pytestmark = pytest.mark.skipif(MISSING is not None and not REQUIRE, reason=f"{MISSING}")
SHOTS = os.environ.get("CAMSTUDY_E2E_SHOTS")
SHORT = {"class_discrimination": "cd", "trust": "trust", "hive_distinction": "hive"}  # screenshot names
SIZES = {
    "desktop": {"viewport": {"width": 1366, "height": 768}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 3,
    },
}


@pytest.fixture(scope="module")
def demo_server(demo_out):
    db = f"sqlite:///{demo_out / 'camstudy.db'}"
    app = create_app({"DATABASE_URL": db, "SECRET_KEY": "demo-pages-secret"})
    srv = Server(app)
    engine = make_engine(db)
    with session_factory(engine)() as s:
        links = {
            st.kind: next(link.url for link in participant_links(st) if link.mode == "debug")
            for st in s.scalars(select(Study))
        }
    engine.dispose()
    yield srv, links
    srv.stop()
    app.extensions["camstudy.engine"].dispose()


def pixels_key(data: bytes) -> str:
    """The decoded pixels' sha256: the served file is padded (an extra PNG chunk), its pixels are not."""
    with Image.open(io.BytesIO(data)) as im:
        return hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def built(demo_out) -> dict[str, dict]:
    """Every file of the demo build, 1x and 2x, by its pixels' sha256: the manifest row."""
    folder = demo_out / "stimuli"
    rows = json.loads((folder / "manifest.json").read_text())["rows"]
    return {
        pixels_key((folder / r[key]).read_bytes()): {**r, "scale": 1 if key == "file" else 2}
        for r in rows
        for key in ("file", "file_2x")
        if r.get(key)
    }


def check_shown(page, img, built: dict[str, dict], phone: bool) -> dict:
    """The image the browser chose (its ``currentSrc``) is a file of the build that the build
    scored as not degenerate (not a checkerboard, not blank), at 2x on a phone's dense screen,
    and drawn no wider than its own pixels."""
    src = img.evaluate("(i) => i.currentSrc")
    row = built.get(pixels_key(page.request.get(src).body()))
    assert row is not None, f"{src} is not a file of the build"
    assert row["method"] == "photo" or not row["structure"]["degenerate"], row["stimulus_id"]
    assert row["scale"] == (2 if phone else 1), (src, row["scale"])
    assert img.evaluate("(i) => i.naturalWidth / i.clientWidth") >= 1
    return row


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), scale="css")  # a phone shot at 390 px, not 1170


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("kind", ["class_discrimination", "trust", "hive_distinction"])
def test_the_demo_studies_as_a_participant_sees_them(demo_server, built, kind, size):
    from playwright.sync_api import expect, sync_playwright

    if MISSING is not None:
        pytest.fail(f"CAMSTUDY_REQUIRE_BROWSER=1 but the browser is missing: {MISSING}")
    srv, links = demo_server
    name = f"{SHORT[kind]}-{size}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(base_url=srv.base, **SIZES[size])
            ctx.set_default_timeout(20_000)
            watch = Watch(ctx, srv.base)
            page = ctx.new_page()
            page.goto(links[kind])
            consent = page.locator(".consent")
            for fact in ("Researcher", "Payment", "Ethics approval", "Questions", "Time"):
                expect(consent.locator("dt", has_text=fact)).to_be_visible()
            tap = size == "phone"
            agree = page.get_by_role("button", name="I agree, start")
            agree.tap() if tap else agree.click()
            expect(page.locator("#example")).to_be_visible()
            expect(page.locator("#start")).to_be_enabled()
            for img in page.locator("#example img").all():
                expect(img).to_have_js_property("complete", True)
                # The worked example teaches reading an explanation: never the photo baseline.
                assert check_shown(page, img, built, tap)["method"] != "photo"
            expect(page.locator("#example-explanation")).not_to_have_text("")
            shot(page, f"{name}-instructions.png")
            start = page.locator("#start")
            start.tap() if tap else start.click()
            expect(page.locator("#progress")).to_have_text(re.compile("Practice"))
            expect(page.locator("#answers button:enabled")).not_to_have_count(0)
            for img in page.locator("#images img").all():
                assert check_shown(page, img, built, tap)["method"] != "photo"
            button = page.locator("#answers button:enabled").first
            button.tap() if tap else button.click()
            go = page.get_by_role("button", name="Start the real trials")
            go.tap() if tap else go.click()
            # The screenshot shows the first trial with an explanation (trust plans mix in the
            # photo-only baseline and checks); every trial on the way is checked too.
            for trial in range(1, 6):
                expect(page.locator("#progress")).to_have_text(re.compile(rf"Trial {trial} of \d+"))
                expect(page.locator("#answers button:enabled")).not_to_have_count(0)
                rows = []
                for img in page.locator("#images img").all():
                    expect(img).to_have_js_property("complete", True)
                    rows.append(check_shown(page, img, built, tap))
                if all(r["method"] != "photo" for r in rows) and len({r["stimulus_id"] for r in rows}) == len(rows):
                    break
                button = page.locator("#answers button:enabled").first
                button.tap() if tap else button.click()
            else:
                pytest.fail("five trials in a row without an explanation")
            shot(page, f"{name}-trial.png")
            watch.check()
        finally:
            browser.close()
