"""``camstudy db upgrade``, ``study create`` and ``admin create-user`` as a user runs them."""

from __future__ import annotations

from camstudy.cli import main
from tests.study.conftest import CD_TOML, write_config


def test_upgrade_then_create_prints_the_slug_last(tmp_path, stimuli_dir, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    cfg = write_config(tmp_path, "cd", CD_TOML)
    assert main(["study", "create", str(cfg), "--stimuli", str(stimuli_dir), "--db", url]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "cd" and "participant link: /s/cd/" in out
    assert main(["study", "create", str(cfg), "--stimuli", str(stimuli_dir), "--db", url]) == 2
    assert "exists already" in capsys.readouterr().err
    monkeypatch.setenv("CAMSTUDY_ADMIN_PASSWORD", "correct horse battery")
    assert main(["admin", "create-user", "ada", "--db", url]) == 0


def test_create_errors_are_one_line(tmp_path, stimuli_dir, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    cfg = write_config(tmp_path, "cd", CD_TOML)
    assert main(["study", "create", str(cfg), "--stimuli", str(stimuli_dir), "--db", url]) == 2
    assert "not migrated: run `camstudy db upgrade` first" in capsys.readouterr().err
    main(["db", "upgrade", "--db", url])
    capsys.readouterr()
    bad = write_config(tmp_path, "bad", CD_TOML.replace('task = "class_discrimination"', 'task = "ranking"'))
    assert main(["study", "create", str(bad), "--stimuli", str(stimuli_dir), "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "task: must be one of class_discrimination, trust" in err
    assert main(["study", "create", str(cfg), "--stimuli", str(tmp_path), "--db", url]) == 2
    assert "not a finished stimuli build" in capsys.readouterr().err
