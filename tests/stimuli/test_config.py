"""The stimulus config: defaults, validation messages that name the field."""

import pytest

from camstudy import examples
from camstudy.errors import UserError
from stimuli.config import DEFAULT_METHODS, load_config, parse_config

MINIMAL = {
    "models": {"stronger": {"name": "efficientnet_lite2"}, "weaker": {"name": "mobilenet_v2"}},
    "source": {"type": "demo"},
    "tasks": {"trust": {}},
}


def test_shipped_examples_are_valid():
    with examples.path("demo.toml") as path:
        demo = load_config(path)
    assert demo.models["stronger"].name == "efficientnet_lite2"
    assert demo.class_discrimination.attention_checks == 4 and demo.trust.baseline
    # Deconvnet of the offline pair is a checkerboard the build scores as degenerate.
    assert demo.methods == ("guided_backprop", "guided_gradcam", "gradcam")
    with examples.path("paper.toml") as path:
        paper = load_config(path)
    assert paper.models["weaker"].name == "alexnet" and paper.source["type"] == "voc"
    assert paper.methods == ("deconvnet", "guided_backprop", "deconv_gradcam", "guided_gradcam", "gradcam")


def test_defaults_and_fingerprint(tmp_path):
    cfg = parse_config(MINIMAL, tmp_path / "c.toml")
    assert cfg.methods == DEFAULT_METHODS and cfg.display_size == 224 and cfg.class_discrimination is None
    assert cfg.out == tmp_path / "stimuli-out"
    moved = parse_config({**MINIMAL, "out": "elsewhere", "device": "cpu"}, tmp_path / "c.toml")
    assert moved.sha256 == cfg.sha256  # where and on what device: not what
    other = parse_config({**MINIMAL, "seed": 5}, tmp_path / "c.toml")
    assert other.sha256 != cfg.sha256


def _with(path: str, value):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in MINIMAL.items()}
    raw["models"] = {k: dict(v) for k, v in MINIMAL["models"].items()}
    raw["tasks"] = {k: dict(v) for k, v in MINIMAL["tasks"].items()}
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return raw


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("seed", "x", "seed: must be an integer, got 'x'"),
        ("seed", True, "seed: must be an integer, got True"),
        ("display_size", 10, "display_size: must be an integer from 32 to 2048, got 10"),
        ("methods", ["gradcam", "magic"], "methods: unknown method 'magic'"),
        ("methods", [], "methods: must be a non-empty list"),
        ("colour", 1, "colour: unknown key"),
        ("models.stronger.name", 3, "models.stronger.name: must be a model name, got 3"),
        ("models.stronger.size", 3, "models.stronger.size: unknown key"),
        ("tasks.trust.attention_checks", "four", "tasks.trust.attention_checks: must be an integer >= 0, got 'four'"),
        ("tasks.trust.attention_checks", -1, "tasks.trust.attention_checks: must be an integer >= 0, got -1"),
        ("tasks.class_discrimination", {"baseline": True}, "tasks.class_discrimination.baseline: not available"),
        ("tasks.ranking", {}, "tasks.ranking: unknown key"),
        ("render.alpha", 2, r"render.alpha: must be a number in \[0, 1\], got 2"),
        ("categories.cat", "281", "categories.cat: must be a list"),
        ("source", {"path": "x"}, "source.type: missing"),
    ],
)
def test_errors_name_the_field(tmp_path, path, value, message):
    with pytest.raises(UserError, match=message):
        parse_config(_with(path, value), tmp_path / "c.toml")


def test_missing_sections_and_files(tmp_path):
    with pytest.raises(UserError, match="models.weaker: missing"):
        parse_config({**MINIMAL, "models": {"stronger": {"name": "a"}}}, tmp_path / "c.toml")
    with pytest.raises(UserError, match="tasks: plan at least one"):
        parse_config({**MINIMAL, "tasks": {}}, tmp_path / "c.toml")
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(bad)


def test_a_shipped_example_is_not_built_inside_the_package(capsys):
    from camstudy import examples
    from camstudy.cli import main

    with examples.path("demo.toml") as shipped:
        assert main(["stimuli", "build", str(shipped), "--quiet"]) == 2
    assert "copy them first (camstudy examples DIR) or pass --out" in capsys.readouterr().err
