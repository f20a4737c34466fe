"""The benchmark registry read by eval's consumers: the built-ins' sets, labels, scales and headline order as
before, and a benchmark registered here picked up by decontamination, the data check and the report's
labels and scales."""
from dataclasses import dataclass, field

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain_eval import comparisons as cmp
from fitrain_eval.benchmarks import Benchmark, benchmarks, register, set_names, unregister
from fitrain_eval.decontamination import DecontaminationConfig, benchmark_sets, check_benchmarks
from fitrain_eval.report_data import benchmark_of
from fitrain_eval.run import EvalConfig


@dataclass
class EchoSettings:
    enabled: bool = False
    prompts: list[str] = field(default_factory=list)


class Echo(Benchmark):
    name, settings, prefixes, percent = "echo", EchoSettings, ("echo",), True
    labels = {"echo/acc": "Echo accuracy"}
    sets = {"echo_prompts": "echo"}

    def check_data(self, cfg, decontamination):
        if (self.enabled(cfg) or "echo_prompts" in decontamination) and not self.config(cfg).prompts:
            raise FitrainError("echo data not found: set eval.plugins.echo.prompts")

    def load_set(self, cfg, name, rejects):
        return [(str(i), p) for i, p in enumerate(self.config(cfg).prompts)]


@pytest.fixture
def echo():
    b = register(Echo())
    try:
        yield b
    finally:
        unregister(b.name)


def test_the_built_ins_as_the_report_and_decontamination_knew_them():
    assert [b.name for b in benchmarks()] == ["lm_eval", "heldout", "mixeval", "mtbench101", "pairwise"]
    assert set_names() == ["mixeval", "mixeval_hard", "mtbench101", "alpaca_eval"]
    assert DecontaminationConfig().benchmarks == set_names()
    assert [benchmark_of(m) for m in ("mixeval_hard/overall", "pairwise/standard/win_rate", "lm_eval/x/acc")] == \
        ["mixeval_hard", "alpaca_eval", None]
    assert (cmp.label("mtbench101/overall"), cmp.scale("mtbench101/overall"), cmp.scale("mixeval/overall")) == \
        ("MT-Bench-101", 1.0, 100.0)
    assert cmp.label("lm_eval_instruction/arc/acc") == "arc acc (instruction format)"


def test_a_registered_benchmark_is_read_by_every_consumer(echo):
    cfg = EvalConfig()
    cfg.plugins = {"echo": {"enabled": True, "prompts": ["say hi", "say bye"]}}
    assert echo.enabled(cfg) and "echo_prompts" in set_names()
    check_benchmarks(["echo_prompts"])
    assert benchmark_sets(["echo_prompts"], cfg, Rejects()) == {"echo_prompts": [("0", "say hi"), ("1", "say bye")]}
    assert (cmp.label("echo/acc"), cmp.scale("echo/acc"), benchmark_of("echo/acc")) == ("Echo accuracy", 100.0,
                                                                                         "echo_prompts")
    echo.disable(cfg)
    assert not echo.enabled(cfg)
    with pytest.raises(FitrainError, match="echo data not found"):
        echo.check_data(EvalConfig(plugins={"echo": {"enabled": True}}), set())
    with pytest.raises(FitrainError, match=r"unknown decontamination benchmark\(s\) \['nope'\]"):
        check_benchmarks(["nope"])


def test_a_benchmark_with_sets_must_load_them_and_a_sets_only_one_refuses_to_run():
    with pytest.raises(TypeError, match="declares decontamination sets .* defines no load_set"):
        class NoLoader(Benchmark):  # noqa: F841
            name, sets = "noloader", {"x": "x"}
    with pytest.raises(FitrainError, match="benchmark 'echo' supplies decontamination sets only .echo_prompts."):
        Echo().run(None)
