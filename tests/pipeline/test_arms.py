"""Arm specs: validation errors that name the arm, budget references and their roots, seeds as runs, and the
graph each kind of arm adds (with its dependencies)."""
import pytest

from fitrain.core.errors import FitrainError
from fitrain.pipeline.arms import ArmSet, runs_of
from fitrain.pipeline.graph import ExperimentConfig, experiment_steps

QA = {"name": "qa", "kind": "generated", "method": "qa_appended", "llm": {"backend": "extractive"}}


def _cfg(tmp_path, arms, **kw) -> ExperimentConfig:
    return ExperimentConfig(name="arms", run_dir=str(tmp_path / "run"), arms=arms, **kw)


@pytest.mark.parametrize("arms, message", [
    ([{"name": "fi", "kind": "fi"}, {"name": "x", "kind": "ipt"}],
     "arm 'x': unknown kind 'ipt'; one of fi, documents, corpus, mixture, generated"),
    (["fi", {"name": "std", "kind": "documents", "budget": {"reference": "fii"}}],
     "arm 'std': unknown budget.reference 'fii'; the arms are ['fi', 'std']"),
    ([{"name": "fi", "kind": "fi", "budget": {"reference": "std"}}, {"name": "std", "kind": "documents"}],
     "arm 'fi': budget references form a cycle: fi -> std -> fi"),
    (["fi", {"name": "a", "kind": "corpus", "paths": ["x"], "budget": {"reference": "b"}},
      {"name": "b", "kind": "corpus", "paths": ["y"], "budget": {"reference": "a"}}],
     "arm 'a': budget references form a cycle: a -> b -> a"),
    (["fi", {"name": "ipt", "kind": "corpus"}], "arm 'ipt': a corpus arm needs paths"),
    (["fi", {"name": "ipt", "kind": "corpus", "paths": ["x"], "method": "rephrase"}],
     "arm 'ipt': method: not a setting of a corpus arm (it takes paths, reader)"),
    (["fi", {"name": "qa", "kind": "generated", "method": "summaries", "llm": {"backend": "extractive"}}],
     "arm 'qa': method must be one of"),
    (["fi", {"name": "qa", "kind": "generated", "method": "rephrase"}], "arm 'qa': llm.model is empty"),
    (["fi", {"name": "mix", "kind": "mixture", "sources": [{"arm": "fi"}]}], "arm 'mix': sources[0] 'fi' is an fi arm"),
    (["fi", {"name": "mix", "kind": "mixture", "sources": [{"arm": "nope"}]}],
     "arm 'mix': sources[0] names unknown arm 'nope'"),
    (["fi", {"name": "mix", "kind": "mixture", "sources": [{"arm": "standard", "paths": ["x"]}]}, "standard"],
     "arm 'mix': sources[0] must name either an arm or paths"),
    ([{"name": "mix", "kind": "mixture", "sources": [{"paths": ["x"]}]}],
     "arm 'mix': a mixture draws the tokens of its reference arm"),
    (["fi", {"name": "std", "kind": "documents", "pairs_pf": "fi"}], "arms[1] 'std': unknown config key 'pairs_pf'"),
    (["fi", "fi"], "arm names must be unique; repeated: ['fi']"),
    (["fi", "ipt"], "arms[1] 'ipt': a plain name is only ['fi', 'standard']"),
    (["fi", {"name": "heldout", "kind": "documents"}], "arm 'heldout': the name is reserved"),
    (["fi", {"name": "std.seed1", "kind": "documents"}], "arm name 'std.seed1' must start with a letter"),
    ([{"name": "fi", "kind": "fi", "loss_mask": "answer"}], "arm 'fi': loss_mask must be one of"),
])
def test_arm_spec_errors_name_the_arm(tmp_path, arms, message):
    with pytest.raises(FitrainError) as e:
        _cfg(tmp_path, arms)
    assert message in str(e.value)


def test_a_missing_corpus_names_the_arm_before_anything_runs(tmp_path):
    from fitrain.pipeline.run import run_experiment

    cfg = _cfg(tmp_path, ["fi", {"name": "ipt", "kind": "corpus", "paths": [str(tmp_path / "ipt" / "*.txt")]}])
    with pytest.raises(FitrainError, match=r"arm 'ipt': corpus not found: input not found: '.*ipt/\*\.txt' matches no"):
        run_experiment(cfg, runners={}, log=lambda m: None)
    assert not cfg.root.exists()  # refused before the run directory was written


def test_a_step_that_does_not_read_the_download_runs_without_it(tmp_path):
    """Once an arm's source step has normalised its corpus, later jobs (training, eval) no longer need the
    user's files; only a source step still to run checks them."""
    from fitrain.core.io import mark_done
    from fitrain.pipeline.run import run_experiment

    cfg = _cfg(tmp_path, ["fi", {"name": "ipt", "kind": "corpus", "paths": [str(tmp_path / "gone" / "*.txt")]}])
    ran = []
    runners = {"corpus": lambda c, s, sh: ran.append(s.name) or {}}
    run_experiment(cfg, runners=runners, only=["corpus"], log=lambda m: None)
    assert ran == ["corpus"]
    with pytest.raises(FitrainError, match="arm 'ipt': corpus not found"):
        run_experiment(cfg, runners=runners, only=["source-ipt"], log=lambda m: None)
    mark_done(cfg.layout.step_marker_dir("source-ipt"), {"deps": []})
    run_experiment(cfg, runners=runners, only=["source-ipt"], log=lambda m: None)  # finished: not checked


def test_shorthand_names_are_the_two_arm_experiment(tmp_path):
    short = [s.name for s in experiment_steps(_cfg(tmp_path, ["fi", "standard"]))]
    spelled = [s.name for s in experiment_steps(_cfg(tmp_path, [{"name": "fi", "kind": "fi"},
                                                                 {"name": "standard", "kind": "documents"}]))]
    assert short == spelled == ["corpus", "tokenizer", "data_gen-templates", "data_gen", "prepare-fi",
                                "prepare-standard", "train-fi", "train-standard", "eval-fi", "eval-standard", "report"]


def test_references_chain_to_a_root_and_the_primary_defaults_to_the_first_fi_arm():
    arms = ArmSet(["standard", "fi", {"name": "ipt", "kind": "corpus", "paths": ["x"], "budget": {"reference": "standard"}},
                   {"name": "own", "kind": "corpus", "paths": ["y"], "budget": {"reference": "own"}}])
    assert arms.reference == arms.primary == "fi"
    assert [arms.root(n) for n in arms.names] == ["fi", "fi", "fi", "own"]
    assert arms.pairs_source("standard") == "fi"


def test_seeds_are_runs_named_by_run_id():
    assert [r.id for r in runs_of(["fi", "qa"], [], 3)] == ["fi", "qa"]
    assert [(r.id, r.seed) for r in runs_of(["fi"], [0, 1, 2], 0)] == [("fi.seed0", 0), ("fi.seed1", 1), ("fi.seed2", 2)]
    with pytest.raises(FitrainError, match="seeds must be distinct"):
        ExperimentConfig(seeds=[1, 1])


def test_each_kind_adds_its_data_step_with_dependencies(tmp_path):
    arms = ["fi", {"name": "fi_nojudge", "kind": "fi", "min_judge_score": 0}, "standard",
            {"name": "fi_strict", "kind": "fi", "min_judge_score": 5}, QA,
            {"name": "ipt", "kind": "corpus", "paths": ["x"]},
            {"name": "mix", "kind": "mixture", "sources": [{"arm": "standard"}, {"arm": "qa", "weight": 2}]}]
    cfg = _cfg(tmp_path, arms, seeds=[0, 1])
    cfg.data_gen.num_shards, cfg.heldout_shards = 4, 1
    steps = experiment_steps(cfg)
    by = {s.name: s for s in steps}
    names = [s.name for s in steps]
    for i, s in enumerate(steps):  # dependency order
        assert all(names.index(d) < i for d in s.deps), s.name
    assert by["pairs-fi_nojudge"].deps == ["data_gen"] and "pairs-fi_nojudge" in by["prepare-fi_nojudge"].deps
    assert "pairs-fi_strict" not in by  # above data_gen's threshold: the final pairs, filtered
    gen = by["generate-qa"]
    assert (gen.kind, gen.shards, gen.deps) == ("data_gen", 3, ["corpus"])  # an array over the training shards
    assert by["source-ipt"].deps == [] and set(by["prepare-ipt"].deps) == {"tokenizer", "source-ipt"}
    assert set(by["source-mix"].deps) == {"tokenizer", "prepare-fi", "data_gen", "generate-qa"}
    assert set(by["train-ipt.seed1"].deps) == {"prepare-ipt", "prepare-fi", "prepare-heldout"}
    assert by["train-ipt.seed1"].seed == 1 and by["train-ipt.seed1"].run == "ipt.seed1"
    assert {n for n in names if n.startswith("train-")} == {f"train-{a}.seed{k}" for a in
                                                            ("fi", "fi_nojudge", "standard", "fi_strict", "qa", "ipt",
                                                             "mix") for k in (0, 1)}
    assert set(by["report"].deps) == {n for n in names if n.startswith("eval-")}


def test_head_to_head_pairs_the_primary_with_every_other_arm_seed_by_seed(tmp_path):
    cfg = _cfg(tmp_path, ["fi", "standard", QA], seeds=[0, 1])
    cfg.eval.pairwise.enabled = True
    by = {s.name: s for s in experiment_steps(cfg)}
    h2h = sorted(n for n in by if n.startswith("h2h-"))
    assert h2h == ["h2h-fi.seed0-vs-qa.seed0", "h2h-fi.seed0-vs-standard.seed0", "h2h-fi.seed1-vs-qa.seed1",
                   "h2h-fi.seed1-vs-standard.seed1"]
    # chained per primary run (they write into one eval directory), each after both evaluations
    assert by["h2h-fi.seed0-vs-qa.seed0"].deps == ["h2h-fi.seed0-vs-standard.seed0", "eval-fi.seed0", "eval-qa.seed0"]
    assert set(h2h) <= set(by["report"].deps)
