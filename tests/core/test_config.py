from dataclasses import dataclass, field

import pytest

from fitrain.core.config import load_config, redact, to_yaml
from fitrain.core.errors import ConfigError


@dataclass
class Optim:
    lr: float = 3e-3
    warmup_steps: int = 5000


@dataclass
class Root:
    name: str = "x"
    optim: Optim = field(default_factory=Optim)
    paths: list[str] = field(default_factory=list)


def test_defaults_recipe_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("optim:\n  lr: 0.1\n")
    r = tmp_path / "r.yaml"
    r.write_text("_base_: base.yaml\nname: run\noptim:\n  warmup_steps: 10\n")
    cfg = load_config(Root, r, ["optim.lr=0.5", "paths=[a,b]"])
    assert isinstance(cfg, Root) and isinstance(cfg.optim, Optim)
    assert (cfg.name, cfg.optim.lr, cfg.optim.warmup_steps, cfg.paths) == ("run", 0.5, 10, ["a", "b"])
    assert "warmup_steps: 10" in to_yaml(cfg)


def test_unknown_key_names_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"optim.lrr.*did you mean 'optim.lr'"):
        load_config(Root, None, ["optim.lrr=1"])
    r = tmp_path / "r.yaml"
    r.write_text("optimm:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="did you mean 'optim'"):
        load_config(Root, r)


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"optim.warmup_steps.*expected int"):
        load_config(Root, None, ["optim.warmup_steps=abc"])


def test_bad_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Root, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Root, bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Root, None, ["optim.lr"])


def test_redact():
    d = redact({"api_key": "sk-1", "tokenizer": "path", "max_tokens": 5, "judge": {"hf_token": "t", "x": 1}})
    assert d == {"api_key": "***", "tokenizer": "path", "max_tokens": 5, "judge": {"hf_token": "***", "x": 1}}


def test_run_ids_name_arm_and_seed():
    from fitrain.core.layout import RunLayout, parse_run_id, run_id

    assert run_id("fi") == "fi" and run_id("fi", 2) == "fi.seed2"
    assert parse_run_id("fi.seed2") == ("fi", 2) and parse_run_id("fi") == ("fi", None)
    assert parse_run_id("ipt.v2.seed10") == ("ipt.v2", 10) and parse_run_id("x.seedy") == ("x.seedy", None)
    lay = RunLayout.of("/r")
    assert lay.train(run_id("fi", 1)).root.as_posix() == "/r/train/fi.seed1" and lay.train("fi").arm == "fi"
