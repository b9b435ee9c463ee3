"""The layering of the packages: the study server and the analysis run without torch, and
the import-linter contracts in pyproject.toml hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Import every module of `study` and `analysis` in a fresh interpreter where `import torch`
# (and the engine and stimulus packages) fail.
NO_TORCH = r"""
import importlib, pkgutil, sys

class Refuse:
    BLOCKED = ("torch", "torchvision", "gradcam", "stimuli")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Refuse())
import study, analysis
names = []
for pkg in (study, analysis):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if ".migrations" in m.name or m.name == "study.wsgi":
            continue  # Alembic's env runs only under Alembic; wsgi builds the server's app
        importlib.import_module(m.name)
        names.append(m.name)
from study.app import create_app
create_app({"SECRET_KEY": "x", "DATABASE_URL": "sqlite://", "CHECK_SCHEMA": False})
assert not any(k.split(".")[0] in Refuse.BLOCKED for k in sys.modules)
print(len(names))
"""


def test_study_and_analysis_import_without_torch():
    r = subprocess.run([sys.executable, "-c", NO_TORCH], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.split()[-1]) > 20  # it did walk the packages


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports (import-linter) is not installed: `make install` installs it")
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout
