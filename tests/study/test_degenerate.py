"""``camstudy study create`` and degenerate stimuli: a build whose weaker model's Deconvnet
is a checkerboard (tests.stimuli.tiny_models.CheckerNet) is refused, naming the pair,
unless the study config says ``allow_degenerate = true``; a build without structure scores
(made before them) likewise. The 2x files are checked and recorded like the 1x ones."""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import select

from camstudy.cli import main
from camstudy.errors import UserError
from study.db import session_factory, transaction
from study.models import Stimulus
from study.settings import load_study_config
from study.setup import create_study
from tests.study.conftest import CD_TOML, TRUST_TOML, create_engine_for, write_config

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def checker_dir(tmp_path_factory):
    from stimuli.build import build
    from stimuli.config import load_config
    from tests.stimuli.conftest import make_study

    root = tmp_path_factory.mktemp("checker")
    cfg = load_config(make_study(root, weaker="checker", methods=["deconvnet", "gradcam"]))
    build(cfg, cfg.out, progress=False)
    return cfg.out


def _create(migrated: str, folder, tmp_path, body: str, name: str = "cd"):
    engine = create_engine_for(migrated)
    try:
        with transaction(session_factory(engine)) as s:
            study = create_study(s, load_study_config(write_config(tmp_path, name, body)), folder)
            return {st.stimulus_id: st for st in s.scalars(select(Stimulus).where(Stimulus.study_id == study.id))}
    finally:
        engine.dispose()


def test_a_degenerate_pair_is_refused_by_name(migrated, checker_dir, tmp_path, capsys):
    with pytest.raises(UserError) as e:
        _create(migrated, checker_dir, tmp_path, CD_TOML)
    msg = str(e.value)
    assert "deconvnet of the weaker model tests.stimuli.tiny_models:checker" in msg and "\n" not in msg
    assert "allow_degenerate = true" in msg and "gradcam" not in msg
    # The command line: one line on stderr, exit 2, nothing written.
    path = write_config(tmp_path, "cli", CD_TOML)
    assert main(["study", "create", str(path), "--stimuli", str(checker_dir), "--db", migrated]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "degenerate" in err
    assert _create(
        migrated,
        checker_dir,
        tmp_path,
        CD_TOML.replace('slug = "cd"', 'slug = "cd2"').replace("platform =", 'methods = ["gradcam"]\nplatform ='),
    ), "a study without them is made"


def test_allow_degenerate_accepts_it(migrated, checker_dir, tmp_path):
    stimuli = _create(migrated, checker_dir, tmp_path, "allow_degenerate = true\n" + TRUST_TOML, "trust")
    assert any(s.method == "deconvnet" and s.model_role == "weaker" for s in stimuli.values())
    for s in stimuli.values():
        assert s.file_2x == s.file.removesuffix(".png") + "@2x.png"
        assert s.served_size_2x >= (checker_dir / s.file_2x).stat().st_size + 12


def test_a_build_without_structure_scores_is_refused_unless_allowed(migrated, checker_dir, tmp_path):
    old = tmp_path / "old-build"
    shutil.copytree(checker_dir, old)
    doc = json.loads((old / "manifest.json").read_text())
    del doc["structure"]
    for r in doc["rows"]:  # as a build before the scores and the 2x files wrote it
        for k in ("structure", "file_2x", "sha256_2x", "how_2x"):
            r.pop(k)
    (old / "manifest.json").write_text(json.dumps(doc))
    body = CD_TOML.replace("platform =", 'methods = ["gradcam"]\nplatform =')
    with pytest.raises(UserError, match="no structure scores.*rebuild it"):
        _create(migrated, old, tmp_path, body)
    stimuli = _create(migrated, old, tmp_path, "allow_degenerate = true\n" + body)
    assert all(s.file_2x is None and s.served_size_2x is None for s in stimuli.values())


def test_a_changed_2x_file_is_refused(migrated, checker_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(checker_dir, copy)
    items = json.loads((copy / "plan.json").read_text())["items"]
    sid = next(
        it["stimulus_ids"][0] for it in items if it["task"] == "class_discrimination" and it["method"] == "gradcam"
    )
    row = next(r for r in json.loads((copy / "manifest.json").read_text())["rows"] if r["stimulus_id"] == sid)
    (copy / row["file_2x"]).write_bytes(b"\x89PNG changed")
    body = CD_TOML.replace("platform =", 'methods = ["gradcam"]\nplatform =')
    with pytest.raises(UserError, match=r"sha256 mismatch.*@2x\.png"):
        _create(migrated, copy, tmp_path, body)
    (copy / row["file_2x"]).unlink()
    with pytest.raises(UserError, match=r"stimulus file missing.*@2x\.png"):
        _create(migrated, copy, tmp_path, body)
