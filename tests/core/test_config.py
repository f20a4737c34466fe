import dataclasses
from dataclasses import dataclass, field

import pytest

from fitrain.core.config import load_config, redact, to_yaml
from fitrain.core.checks import above, at_least, check_fields, interval, one_of, regex
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


@dataclass
class Checked:
    lr: float = 0.1
    beta: float = 0.9
    batch: int = 8
    mode: str = "a"
    pattern: str = ""
    cap: float | None = None

    def __post_init__(self) -> None:
        check_fields(self, lr=above(0), beta=interval("[0, 1)"), batch=at_least(1), mode=one_of("a", "b"), pattern=regex,
                     cap=interval("(0, 10]"))


@dataclass
class Outer:
    inner: Checked = field(default_factory=Checked)


@pytest.mark.parametrize("override, message", [
    ("inner.lr=-1", "inner.lr must be > 0, got -1.0"),
    ("inner.lr=0", "inner.lr must be > 0"),
    ("inner.beta=1", "inner.beta must be in [0, 1), got 1.0"),
    ("inner.batch=0", "inner.batch must be >= 1, got 0"),
    ("inner.mode=c", "inner.mode must be one of ['a', 'b'], got 'c'"),
    ("inner.pattern=(a", "inner.pattern must be a valid regular expression"),
    ("inner.cap=0", "inner.cap must be in (0, 10]"),
    ("inner.cap=10.5", "inner.cap must be in (0, 10]"),
    ("inner.batch=[1", "override 'inner.batch=[1': the value is not valid YAML"),
    ("inner={x: 1", "override 'inner={x: 1': the value is not valid YAML"),
])
def test_field_checks_name_the_full_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(Outer, None, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_field_checks_pass_good_values_and_unset_optionals():
    from fitrain.core.config import from_dict, validate_config

    cfg = load_config(Outer, None, ["inner.lr=1e-4", "inner.beta=0", "inner.cap=10", 'inner.pattern="^Q: (.*)$"'])
    assert cfg.inner.cap == 10 and cfg.inner.pattern == "^Q: (.*)$"
    assert load_config(Outer).inner.cap is None
    with pytest.raises(ConfigError, match="inner.beta must be"):
        from_dict(Outer, {"inner": {"beta": 2}})
    with pytest.raises(ConfigError, match="^batch must be >= 1, got -3$"):  # built in Python: checked on construction
        Checked(batch=-3)
    with pytest.raises(ConfigError, match="^batch must be >= 1, got 0$"):
        dataclasses.replace(cfg.inner, batch=0)
    cfg.inner.batch = -3  # a field assigned after construction: validate_config re-runs the construction checks
    with pytest.raises(ConfigError, match="inner.batch must be >= 1, got -3"):
        validate_config(cfg)


def test_an_override_error_without_a_key_names_the_override():
    with pytest.raises(ConfigError, match="override 'optim=3'"):
        load_config(Root, None, ["name=y", "optim=3"])


def test_recipe_yaml_error_is_one_line_with_its_position(tmp_path):
    r = tmp_path / "r.yaml"
    r.write_text("name: x\n  lr: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(Root, r)
    assert "r.yaml is not valid YAML" in str(e.value) and "line 2" in str(e.value) and "\n" not in str(e.value)


def test_os_errors_are_described_in_one_line():
    import errno

    from fitrain.core.errors import describe_os_error

    msg = describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/data/x.npy"))
    assert msg == ("No space left on device (ENOSPC) at /data/x.npy; the file system is full: free space there "
                   "or write somewhere else, then rerun (it resumes)")
    assert "(EACCES)" in describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/root/x"))
    assert describe_os_error(OSError("plain")) == "plain"
