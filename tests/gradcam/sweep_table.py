"""The timing table the model sweeps print after their last test (torchvision's and timm's).

A module-scoped fixture of a sweep calls :func:`sweep_table`: it holds torch at two threads
while the sweep runs (the figures stay comparable from one machine to the next), then
writes one row per model past pytest's output capture, which would otherwise swallow
what a fixture writes at teardown.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

HEADERS = ("model", "layer", "layout", "grid", "rel err", "s")


def sweep_table(request, rows: list[tuple], what: str, widths: tuple[int, int], footer: str = "") -> Iterator[None]:
    """Yield once (the sweep runs), then print ``rows`` (model, layer, layout, grid, relative
    error, seconds) with the model and layer columns ``widths`` wide, and ``footer``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    start = time.perf_counter()
    yield
    torch.set_num_threads(threads)
    total = time.perf_counter() - start
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not rows:
        return
    m, lay = widths
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_line(f"{'model':{m}s} {'layer':{lay}s} {'layout':15s} {'grid':6s} {'rel err':>8s} {'s':>6s}")
        for row in rows:
            reporter.write_line(f"{row[0]:{m}s} {row[1]:{lay}s} {row[2]:15s} {row[3]:6s} {row[4]:>8s} {row[5]:6.1f}")
        reporter.write_line(f"{len(rows)} {what} in {total:.0f} s" + (f"; {footer}" if footer else ""))
