"""The demo's two studies as a participant sees them, in Chromium, on the real offline
models' stimuli: consent text from the config, the worked example, the practice, a trial and
the debrief, on a desktop and on a phone. Every stimulus shown must have decoded with real
structure (not a blank or a checkerboard).

``CAMSTUDY_E2E_SHOTS=DIR`` saves the screenshots the README shows (``docs/screenshots``):
the instructions and a trial of each study, desktop and phone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from study.app import create_app
from study.db import make_engine, session_factory
from study.links import participant_links
from study.models import Study
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, MISSING, REQUIRE, Server, Watch

pytest.importorskip("efficientnet_lite_pytorch", reason="the offline demo pair is not installed")
pytestmark = pytest.mark.skipif(MISSING is not None and not REQUIRE, reason=f"{MISSING}")
SHOTS = os.environ.get("CAMSTUDY_E2E_SHOTS")
SIZES = {"desktop": {"viewport": {"width": 1366, "height": 768}},
         "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
                   "device_scale_factor": 3}}


@pytest.fixture(scope="module")
def demo_server(demo_out):
    db = f"sqlite:///{demo_out / 'camstudy.db'}"
    app = create_app({"DATABASE_URL": db, "SECRET_KEY": "demo-pages-secret"})
    srv = Server(app)
    engine = make_engine(db)
    with session_factory(engine)() as s:
        links = {st.kind: next(link.url for link in participant_links(st) if link.mode == "debug")
                 for st in s.scalars(select(Study))}
    engine.dispose()
    yield srv, links
    srv.stop()
    app.extensions["camstudy.engine"].dispose()


def structured(img) -> bool:
    """The decoded image has real structure: neither flat nor a pixel-level checkerboard
    (the luminance differs between neighbouring 8-pixel blocks, not only between pixels)."""
    return img.evaluate("""(i) => {
        const c = document.createElement('canvas');
        c.width = i.naturalWidth; c.height = i.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(i, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        const lum = (x, y) => { const k = 4 * (y * c.width + x); return d[k] + d[k + 1] + d[k + 2]; };
        const blocks = [];
        for (let y = 0; y + 8 <= c.height; y += 8) for (let x = 0; x + 8 <= c.width; x += 8) {
            let s = 0; for (let v = 0; v < 8; v++) for (let u = 0; u < 8; u++) s += lum(x + u, y + v);
            blocks.push(s / 64);
        }
        const mean = blocks.reduce((a, b) => a + b, 0) / blocks.length;
        const sd = Math.sqrt(blocks.reduce((a, b) => a + (b - mean) ** 2, 0) / blocks.length);
        return sd > 12;
    }""")


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("kind", ["class_discrimination", "trust"])
def test_the_demo_studies_as_a_participant_sees_them(demo_server, kind, size):
    from playwright.sync_api import expect, sync_playwright

    if MISSING is not None:
        pytest.fail(f"CAMSTUDY_REQUIRE_BROWSER=1 but the browser is missing: {MISSING}")
    srv, links = demo_server
    name = f"{'cd' if kind == 'class_discrimination' else 'trust'}-{size}"
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
                assert structured(img), "the worked example shows no structure"
            expect(page.locator("#example-explanation")).not_to_have_text("")
            shot(page, f"{name}-instructions.png")
            start = page.locator("#start")
            start.tap() if tap else start.click()
            expect(page.locator("#progress")).to_have_text(re.compile("Practice"))
            button = page.locator("#answers button:enabled").first
            button.tap() if tap else button.click()
            go = page.get_by_role("button", name="Start the real trials")
            go.tap() if tap else go.click()
            expect(page.locator("#progress")).to_have_text(re.compile(r"Trial 1 of \d+"))
            expect(page.locator("#answers button:enabled")).not_to_have_count(0)
            for img in page.locator("#images img").all():
                assert structured(img), "a stimulus shows no structure"
                # Sharp: never drawn wider than its own pixels (the 2x file on a dense screen).
                ratio = img.evaluate("(i) => i.naturalWidth / i.clientWidth")
                assert ratio >= 1, ratio
            shot(page, f"{name}-trial.png")
            watch.check()
        finally:
            browser.close()
