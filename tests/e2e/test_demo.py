"""``camstudy demo``, the README's first command, end to end with the real offline models.

First run: ``--simulate 8 --no-serve`` renders the sheet and the demo stimuli, migrates
the database, creates both studies and the admin user (password printed once), runs the
simulated participants through the real server and writes both analysis reports. Second
run, as a user starts it: everything is reused, the server answers on loopback, and
Ctrl-C (SIGINT) stops it cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from camstudy.processes import free_port
from tests.e2e.servers import wait_until

pytest.importorskip("efficientnet_lite_pytorch", reason="the offline demo pair is not installed")
CAMSTUDY = str(Path(sys.executable).with_name("camstudy"))


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    run = subprocess.run([CAMSTUDY, "demo", "--out", str(out), "--device", "cpu", "--simulate", "8", "--no-serve"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (out / "first-run.txt").write_text(run.stdout)
    return out


def test_first_run_builds_everything_and_analyses_the_bots(demo_out):
    text = (demo_out / "first-run.txt").read_text()
    assert (demo_out / "sheet.png").stat().st_size > 0
    assert (demo_out / "stimuli" / "manifest.json").exists()
    assert re.search(r"admin user 'admin', password \S{12,}", text)
    assert "study 'class-discrimination' (class_discrimination" in text and "study 'trust' (trust" in text
    assert text.count("0 lost, 0 duplicated, 0 changed") == 2
    for slug in ("class-discrimination", "trust"):
        assert (demo_out / "analysis" / slug / "report.html").stat().st_size > 10_000


def test_second_run_reuses_serves_and_stops_on_ctrl_c(demo_out):
    port = free_port()
    proc = subprocess.Popen([CAMSTUDY, "demo", "--out", str(demo_out), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        while not any("admin " in line and "/admin/" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "the demo exited early:\n" + "".join(lines)
            lines.append(line)
        text = "".join(lines)
        assert "(reused)" in text and "481 stimuli, reused" in text and text.count("reused)") >= 4
        assert "password" not in text.replace("its password was printed", "")  # printed once only
        for path in ("/s/class-discrimination/", "/s/trust/", "/admin/login"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                assert r.status == 200, path
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the demo and its server alike
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "server stopped" in rest

    def port_closed() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/s/trust/", timeout=1)
        except OSError:
            return True
        return False

    wait_until(port_closed, 10, "the port to close")
    # No server process of this demo is left behind.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"127.0.0.1:{port}" not in ps, ps
    assert os.path.exists(demo_out / "server.log")
