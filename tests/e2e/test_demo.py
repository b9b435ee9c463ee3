"""``camstudy demo``, the README's first command, end to end with the real offline models.

First run: ``--simulate 8 --no-serve`` renders the sheet and the demo stimuli, migrates
the database, creates both studies and the admin user (password printed once), runs the
simulated participants through the real server and writes both analysis reports. Second
run, as a user starts it: everything is reused, the server answers on loopback, and
Ctrl-C (SIGINT) stops it cleanly.

Stopping is clean (exit 0, "server stopped", no server process left) whatever SIGINT
disposition the demo inherited: a background job of a non-interactive shell (``make demo
&`` in a script, some CI runners) inherits SIGINT ignored, and gunicorn, in the same process
group, still quits on the Ctrl-C. SIGTERM to the demo or to its group stops it as cleanly,
and ten stops in a row under CPU load, at varied moments, all come out clean.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from camstudy.processes import free_port
from tests.e2e.servers import wait_until

pytest.importorskip("efficientnet_lite_pytorch", reason="the offline demo pair is not installed")
CAMSTUDY = str(Path(sys.executable).with_name("camstudy"))
SLUGS = ("class-discrimination", "trust", "hive-distinction")  # the demo's studies, in its order


def test_first_run_builds_everything_and_analyses_the_bots(demo_out):
    text = (demo_out / "first-run.txt").read_text()
    assert (demo_out / "sheet.png").stat().st_size > 0
    assert (demo_out / "stimuli" / "manifest.json").exists()
    assert re.search(r"admin user 'admin', password \S{12,}", text)
    assert "study 'class-discrimination' (class_discrimination" in text and "study 'trust' (trust" in text
    assert "study 'hive-distinction' (hive_distinction" in text
    assert text.count("0 lost, 0 duplicated, 0 changed") == len(SLUGS)
    for slug in SLUGS:
        assert (demo_out / "analysis" / slug / "report.html").stat().st_size > 10_000


def test_second_run_reuses_serves_and_stops_on_ctrl_c(demo_out):
    port = free_port()
    proc = subprocess.Popen(
        [CAMSTUDY, "demo", "--out", str(demo_out), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        while not any("admin " in line and "/admin/" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "the demo exited early:\n" + "".join(lines)
            lines.append(line)
        text = "".join(lines)
        assert "(reused)" in text and "589 stimuli, reused" in text and text.count("reused)") >= 4
        assert "password" not in text.replace("its password was printed", "")  # printed once only
        links = re.findall(rf"http://127\.0\.0\.1:{port}/s/\S+", text)
        assert [re.search(r"/s/([\w-]+)/", u).group(1) for u in links] == list(SLUGS)
        for url in [*links, f"http://127.0.0.1:{port}/admin/login"]:
            with urllib.request.urlopen(url, timeout=10) as r:  # the signed debug links open the consent page
                assert r.status == 200, url
                assert "mode=debug" not in url or "I agree, start" in r.read().decode()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the demo and its server alike
        rest, _ = proc.communicate(timeout=60)
    except BaseException:
        kill_group(proc)  # also the server, which is in the demo's group
        raise
    assert proc.returncode == 0, rest
    assert "server stopped" in rest

    def port_closed() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        return False

    wait_until(port_closed, 10, "the port to close")
    # No server process of this demo is left behind.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"127.0.0.1:{port}" not in ps, ps
    assert os.path.exists(demo_out / "server.log")


# How the demo is started: as the test's child (SIGINT as the test runner has it), with SIGINT
# ignored before exec, and as a background job of a non-interactive shell (which ignores
# SIGINT in the job; the shell then ignores it too and exits with the job's status).
STARTS = {
    "direct": [],
    "sigint-ignored": ["bash", "-c", 'trap "" INT; exec "$@"', "bash"],
    "background-job": ["bash", "-c", '"$@" & pid=$!; trap "" INT; wait $pid', "bash"],
}


@contextmanager
def serving_demo(out: Path, port: int, how: str) -> Iterator[subprocess.Popen]:
    """The demo serving from ``out`` (built already) in a new process group, once it has
    printed its links. Whatever happens, the group (demo, shell, gunicorn master and
    workers) gets SIGKILL at the end; after a clean stop nothing is left to get it."""
    proc = subprocess.Popen(
        [*STARTS[how], CAMSTUDY, "demo", "--out", str(out), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        while not any("admin " in line and "/admin/" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "the demo exited early:\n" + "".join(lines)
            lines.append(line)
        yield proc
    finally:
        kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(10)
    proc.stdout.close()


def stop_demo(proc: subprocess.Popen, port: int, sig: int, group: bool) -> str:
    """Send ``sig`` to the demo (or its whole group, as Ctrl-C does); assert a clean stop."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(demo_pid(proc), sig)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "server stopped" in rest and "error" not in rest, rest
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"127.0.0.1:{port}" not in ps, ps  # no server process of this demo is left
    return rest


def demo_pid(proc: subprocess.Popen) -> int:
    """The ``camstudy demo`` process itself (``proc`` or, for the background job, its child)."""
    if "demo" in Path(f"/proc/{proc.pid}/cmdline").read_text():
        return proc.pid
    kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    (pid,) = [int(k) for k in kids if "demo" in Path(f"/proc/{k}/cmdline").read_text()]
    return pid


def inherited_sigint(how: str) -> str:
    """Whether a program started the way ``how`` starts the demo finds SIGINT ignored."""
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"]
    return subprocess.run([*STARTS[how], *probe], capture_output=True, text=True, timeout=30).stdout.strip()


@pytest.mark.parametrize("how", ["sigint-ignored", "background-job"])
def test_ctrl_c_stops_cleanly_when_sigint_was_inherited_ignored(demo_out, how):
    assert inherited_sigint(how) == "True"  # the premise: SIGINT ignored, so Python installs no handler
    port = free_port()
    with serving_demo(demo_out, port, how) as proc:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login", timeout=10) as r:
            assert r.status == 200  # the server answers
        stop_demo(proc, port, signal.SIGINT, group=True)


@pytest.mark.parametrize("group", [False, True], ids=["demo-only", "process-group"])
def test_sigterm_stops_cleanly(demo_out, group):
    port = free_port()
    with serving_demo(demo_out, port, "direct") as proc:
        stop_demo(proc, port, signal.SIGTERM, group=group)


def test_a_server_that_dies_on_its_own_is_an_error(demo_out):
    """No stop signal: the server's death (SIGKILL to the gunicorn master alone) is reported."""
    port = free_port()
    with serving_demo(demo_out, port, "direct") as proc:
        (server,) = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        os.kill(int(server), signal.SIGKILL)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, rest
    assert "error: the server stopped (exit code -9)" in rest, rest


def test_ten_stops_in_a_row_under_cpu_load_are_all_clean(demo_out):
    """Every start (direct, SIGINT ignored, background job) and stop (SIGINT or SIGTERM, to
    the group or to the demo), each after a random delay of up to 0.3 s, while two busy
    loops keep the CPUs loaded."""
    cases = [
        ("sigint-ignored", signal.SIGINT, True),
        ("background-job", signal.SIGINT, True),
        ("direct", signal.SIGINT, True),
        ("direct", signal.SIGTERM, False),
        ("sigint-ignored", signal.SIGTERM, True),
    ] * 2
    rng = random.Random(2026)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        for i, (how, sig, group) in enumerate(cases):
            port = free_port()
            with serving_demo(demo_out, port, how) as proc:
                time.sleep(rng.uniform(0, 0.3))
                try:
                    stop_demo(proc, port, sig, group)
                except AssertionError as e:
                    raise AssertionError(
                        f"stop {i + 1} of {len(cases)} ({how}, {sig.name}, group={group}): {e}"
                    ) from None
    finally:
        for b in burners:
            b.kill()
            b.wait()
