"""The wheel, installed as a user installs it: the study server runs from it alone.

The wheel is built from a copy of the working tree (the files git tracks or would track:
the checkout itself gets no build/ or egg-info), with the checkout's setuptools
(``--no-build-isolation``, nothing downloaded for the build). It goes into a fresh venv
outside the checkout with a real ``pip install``: the base dependencies (flask,
sqlalchemy, alembic, psycopg, gunicorn, pandas, pyarrow) come from the package index or
pip's cache, and no torch. Measured here: about 10 s for the install (386 MB unpacked), so
every run installs for real rather than borrowing the checkout venv's packages through a
``.pth`` line (0.6 s, but then a missing base dependency, or a server path that imports
torch, would go unnoticed). From a working folder outside the checkout, with the fresh
venv's executables only: ``camstudy db upgrade``, ``camstudy study create``, ``camstudy
serve`` on a free loopback port (its templates and static files served), one simulated
participant through it, and ``camstudy examples DIR``. Every process the test starts is
stopped by its process group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from camstudy.processes import free_port, stop, wait_listening
from tests.study import conftest as study_fixtures

stimuli_dir = study_fixtures.stimuli_dir

ROOT = Path(__file__).resolve().parents[2]
CD = study_fixtures.CD_TOML.replace('slug = "cd"', 'slug = "wheel-cd"')
# What the package reads besides its modules, as the checkout has it.
DATA = [
    ("study", "templates"),
    ("study", "static"),
    ("study", "migrations"),
    ("camstudy", "examples"),
    ("analysis", "templates"),
]


def working_tree_copy(dest: Path) -> Path:
    """The files git tracks or would track (not ignored), as they are in the working tree."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = working_tree_copy(tmp / "src")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("camstudy-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv (no pip of its own: the checkout's pip installs into it) with the wheel."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    run = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points into the checkout or its venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("CAMSTUDY_")
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and not p.startswith(str(ROOT)))
    return {**env, **extra}


def test_the_wheel_carries_templates_static_files_migrations_and_examples(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for package, folder in DATA:
        files = [
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / package / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
        assert files, f"{package}/{folder} is empty in the checkout"
        missing = [f for f in files if f not in names]
        assert not missing, f"not in the wheel: {missing}"
    assert not any(n.startswith(("tests/", "bench/", "examples/")) for n in names)


def test_installed_wheel_migrates_creates_serves_and_takes_a_participant(venv, stimuli_dir, tmp_path):
    work = tmp_path / "work"  # outside the checkout: nothing is found through the working folder
    work.mkdir()
    assert not work.resolve().is_relative_to(ROOT)
    db = f"sqlite:///{work / 'camstudy.db'}"
    env = clean_env(CAMSTUDY_DATABASE_URL=db, CAMSTUDY_INSTANCE=str(work / "instance"))
    bin_ = venv / "bin"

    def camstudy(*args: str, timeout: float = 120) -> str:
        run = subprocess.run(
            [str(bin_ / "camstudy"), *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert run.returncode == 0, f"camstudy {' '.join(args)}:\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
        return run.stdout

    where = subprocess.run(
        [
            str(bin_ / "python"),
            "-c",
            "import camstudy, study, sys; print(study.__file__); "
            "print(camstudy.__file__); print('torch' in sys.modules)",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert where[:2] == [str(site / "study" / "__init__.py"), str(site / "camstudy" / "__init__.py")], where
    no_torch = subprocess.run(
        [str(bin_ / "python"), "-c", "import torch"], cwd=work, env=env, capture_output=True, text=True, timeout=60
    )
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr  # the server install has none

    camstudy("db", "upgrade", "--db", db)  # the migrations, found in the installed package
    (work / "cd.toml").write_text(CD)
    camstudy("study", "create", "cd.toml", "--stimuli", str(stimuli_dir), "--db", db)

    port = free_port()
    log = open(work / "server.log", "w")  # noqa: SIM115 - the server's, closed below
    server = subprocess.Popen(
        [str(bin_ / "camstudy"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        try:
            wait_listening(server, "127.0.0.1", port, timeout=60)
        except RuntimeError as e:
            raise AssertionError(f"{e}:\n{(work / 'server.log').read_text()[-3000:]}") from None
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/admin/login", timeout=10) as r:  # a template
            assert r.status == 200 and b"<form" in r.read()
        with urllib.request.urlopen(f"{base}/static/study.css", timeout=10) as r:  # a static file
            assert r.status == 200 and r.read() == (ROOT / "study" / "static" / "study.css").read_bytes()
        out = camstudy("simulate", base, "--study", "wheel-cd", "--participants", "1", "--db", db, timeout=180)
        assert "1 simulated participants" in out and "completed 1" in out, out
    finally:
        stop(server, timeout=20, group=True)
        log.close()

    copied = camstudy("examples", "my-study")
    for name in ("demo.toml", "class-discrimination.toml", "trust.toml", "paper.toml"):
        assert (work / "my-study" / name).read_bytes() == (ROOT / "camstudy" / "examples" / name).read_bytes()
        assert name in copied


def test_examples_command_copies_configs_that_work_together(tmp_path, capsys):
    """``camstudy examples DIR`` (in the checkout): the copies' relative paths meet in DIR,
    and a second copy keeps the user's edits unless ``--force``."""
    from camstudy.cli import main
    from stimuli.config import load_config
    from study.settings import load_study_config

    dest = tmp_path / "my-study"
    assert main(["examples", str(dest)]) == 0
    assert load_config(dest / "demo.toml").out == dest / "stimuli"
    for name in ("class-discrimination.toml", "trust.toml"):
        assert load_study_config(dest / name).stimuli == dest / "stimuli"
    (dest / "trust.toml").write_text("# edited\n")
    capsys.readouterr()
    assert main(["examples", str(dest)]) == 2
    assert "exists already; pass --force" in capsys.readouterr().err
    assert (dest / "trust.toml").read_text() == "# edited\n"
    assert main(["examples", str(dest), "--force"]) == 0
    assert (dest / "trust.toml").read_bytes() == (ROOT / "camstudy" / "examples" / "trust.toml").read_bytes()
