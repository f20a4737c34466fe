"""The experiment graph with the step functions injected: order, skip-on-rerun, failures, dry run, errors."""
import pytest

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.pipeline.graph import ExperimentConfig, experiment_steps
from fitrain.pipeline.run import load_experiment, run_experiment, run_step
from fitrain.core.io import is_done


def _cfg(tmp_path, **kw):
    cfg = ExperimentConfig(name="graph-test", run_dir=str(tmp_path / "run"), **kw)
    return cfg


class Recorder:
    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, cfg, step, shard):
        self.calls.append(step.name if shard is None else f"{step.name}:{shard}")
        if step.name == self.fail_on:
            raise FitrainError(f"{step.name} broke")
        return {"ok": True}


def _runners(rec):
    return {k: rec for k in ("corpus", "tokenizer", "data_gen", "source", "generate", "pairs", "prepare", "train",
                             "eval", "h2h", "report")}


def test_plan_is_ordered_by_dependencies(tmp_path):
    steps = experiment_steps(_cfg(tmp_path))
    names = [s.name for s in steps]
    assert names == ["corpus", "tokenizer", "data_gen-templates", "data_gen", "prepare-fi", "prepare-standard",
                     "train-fi", "train-standard", "eval-fi", "eval-standard", "report"]
    for i, s in enumerate(steps):
        assert all(names.index(d) < i for d in s.deps), s.name
    by = {s.name: s for s in steps}
    assert "prepare-fi" in by["prepare-standard"].deps  # the standard arm's budget comes from the FI manifest
    assert by["train-fi"].distributed and by["train-fi"].kind == "train"


def test_rerun_skips_finished_steps_and_resumes_after_a_failure(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    rec = Recorder(fail_on="train-standard")
    with pytest.raises(FitrainError, match="train-standard broke"):
        run_experiment(cfg, runners=_runners(rec))
    assert rec.calls[-1] == "train-standard" and "eval-fi" not in rec.calls
    assert not is_done(cfg.layout.step_marker_dir("train-standard"))
    assert is_done(cfg.layout.step_marker_dir("train-fi"))
    rec2 = Recorder()
    out = run_experiment(cfg, runners=_runners(rec2))
    assert rec2.calls == ["train-standard", "eval-fi", "eval-standard", "report"]
    assert out["steps"]["train-fi"] == "skipped" and out["steps"]["report"] == "done"
    rec3 = Recorder()
    run_experiment(cfg, runners=_runners(rec3))
    assert rec3.calls == []
    assert "finished earlier, skipped" in capsys.readouterr().out


def test_array_step_runs_every_shard_with_one_marker_each(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.data_gen.num_shards = 3
    rec = Recorder()
    run_experiment(cfg, runners=_runners(rec), only=["corpus", "tokenizer", "data_gen-templates", "data_gen"])
    assert rec.calls == ["corpus", "tokenizer", "data_gen-templates", "data_gen:0", "data_gen:1", "data_gen:2"]
    assert all(is_done(cfg.layout.step_marker_dir("data_gen", i)) for i in range(3))


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    rec = Recorder()
    run_experiment(cfg, dry_run=True, runners=_runners(rec))
    out = capsys.readouterr().out
    assert rec.calls == [] and not cfg.root.exists()
    assert "11 steps" in out and "prepare-standard" in out and "todo" in out


def test_a_step_whose_dependency_is_unfinished_is_refused(tmp_path):
    cfg = _cfg(tmp_path)
    step = {s.name: s for s in experiment_steps(cfg)}["train-fi"]
    with pytest.raises(FitrainError, match=r"needs \['prepare-fi'\] to finish first"):
        run_step(cfg, step, runners=_runners(Recorder()))


def test_changed_settings_after_finished_steps_are_refused(tmp_path):
    cfg = _cfg(tmp_path)
    run_experiment(cfg, runners=_runners(Recorder()), only=["corpus"])
    cfg.seed = 7
    with pytest.raises(FitrainError, match="different config"):
        run_experiment(cfg, runners=_runners(Recorder()))


def test_bad_arms_and_unknown_steps(tmp_path):
    with pytest.raises(FitrainError, match="arm 'standard': a documents arm trains on the source documents of an "
                                           "fi arm's pairs; add an fi arm"):
        _cfg(tmp_path, arms=["standard"])
    with pytest.raises(FitrainError, match="unknown step"):
        run_experiment(_cfg(tmp_path), only=["train-gpt"], runners=_runners(Recorder()))


def test_unknown_recipe_names_the_nearest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'fi-vs-standard-300m'"):
        load_experiment("fi-vs-standard-30m")
    with pytest.raises(ConfigError, match="unknown config key 'traim'"):
        load_experiment("tiny-cpu", ["traim.seed=1"])


QA = {"name": "qa", "kind": "generated", "method": "qa_appended", "llm": {"backend": "extractive"}}


def test_adding_an_arm_to_a_finished_experiment_runs_only_what_it_needs(tmp_path):
    kw = {"seeds": [0, 1]}
    first = _cfg(tmp_path, **kw)
    first.eval.pairwise.enabled = True
    run_experiment(first, runners=_runners(Recorder()), log=lambda m: None)
    from fitrain.core.io import mark_done

    mark_done(first.layout.step_marker_dir("report"), {})  # as markers were written before deps were recorded
    added = _cfg(tmp_path, arms=["fi", "standard", QA], **kw)
    added.eval.pairwise.enabled = True
    lines, rec = [], Recorder()
    run_experiment(added, runners=_runners(rec), log=lines.append)
    assert rec.calls == ["generate-qa", "prepare-qa", "train-qa.seed0", "train-qa.seed1", "eval-qa.seed0",
                         "eval-qa.seed1", "h2h-fi.seed0-vs-qa.seed0", "h2h-fi.seed1-vs-qa.seed1", "report"]
    assert any("adding arm(s) qa to the finished experiment: only their steps run, and report again" in line
               for line in lines)
    rec = Recorder()
    run_experiment(added, runners=_runners(rec), log=lambda m: None)
    assert rec.calls == []  # the rerun finds everything done, the report included


@pytest.mark.parametrize("change, shown", [
    ({"arms": [{"name": "fi", "kind": "fi", "min_judge_score": 5}, "standard", QA]}, "min_judge_score: 5"),
    ({"arms": ["fi", "standard", QA], "seed": 3}, "+seed: 3"),
    ({"arms": ["fi", QA]}, "-- standard"),                                   # removing an arm
    ({"arms": ["fi", "standard", QA], "primary": "qa"}, "+primary: qa"),
])
def test_any_other_change_than_adding_arms_is_refused_with_the_diff(tmp_path, change, shown):
    run_experiment(_cfg(tmp_path), runners=_runners(Recorder()), only=["corpus"], log=lambda m: None)
    with pytest.raises(FitrainError, match="holds a different config") as e:
        run_experiment(_cfg(tmp_path, **change), runners=_runners(Recorder()), log=lambda m: None)
    assert shown in str(e.value)


def test_dry_run_shows_every_arm_and_its_steps(tmp_path, capsys):
    cfg = _cfg(tmp_path, arms=["fi", "standard", QA, {"name": "ipt", "kind": "corpus", "paths": ["/data/ipt/*.txt"]}],
               seeds=[0, 1])
    run_experiment(cfg, dry_run=True, runners=_runners(Recorder()))
    out = capsys.readouterr().out
    assert "arms (4, seeds [0, 1]; primary fi)" in out
    assert "ipt            corpus     files ['/data/ipt/*.txt']; trains fi's tokens" in out
    for step in experiment_steps(cfg):
        assert f" {step.name} " in out, step.name
    assert out.count("by hand") == len(experiment_steps(cfg)) and not cfg.root.exists()
