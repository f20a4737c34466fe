"""Corpus blocks (fitrain.pipeline.blocks) and the table1 recipes that use them: the paper's two blocks,
rows, budgets, tokenizer and judges; the size ladder; the readable dry run."""
import pytest

from fitrain.core.errors import FitrainError
from fitrain.pipeline.blocks import block_config, tokens_text
from fitrain.pipeline.graph import experiment_steps
from fitrain.core.config import validate_config
from fitrain.pipeline.run import load_experiment

LADDER = ("table1-300m", "table1-1.8b", "table1-7b")


def test_table1_has_the_papers_two_blocks_rows_budgets_and_judges(tmp_path):
    cfg = load_experiment("table1-1.8b", [f"run_dir={tmp_path / 'run'}"])  # checked on construction
    ipt, nem = (block_config(cfg, b) for b in ("ipt", "nemotron"))
    assert ipt.arm_set().names == ["fi", "fi_nojudge", "standard", "ipt"]
    assert nem.arm_set().names == ["fi", "fi_nojudge", "standard", "nemotron_wrap", "nemotron_qa", "nemotron_mix",
                                   "qa", "wrap"]
    assert [nem.arm_set().kind(a).beyond_paper for a in nem.arm_set().names] == [False] * 6 + [True] * 2
    assert ipt.train.max_tokens == 4 * 23e9 and ipt.train.budget_from_epochs == 4  # 4 epochs of ~23B
    assert nem.train.max_tokens == 300e9 and nem.train.budget_from_epochs == 1    # ~300B x 1 epoch
    assert ipt.root == cfg.root / "blocks" / "ipt" and ipt.corpus.paths != nem.corpus.paths
    assert cfg.eval.judge.llm.model == "gpt-5-mini" and cfg.eval.judges["pairwise"]["llm"]["model"] == "gpt-4-turbo"
    assert cfg.eval.judge.llm.api_key_env == "OPENAI_API_KEY" and cfg.eval.judge.llm.api_key == "EMPTY"
    names = [s.name for s in experiment_steps(cfg)]
    assert "ipt.train-ipt" in names and "nemotron.h2h-fi-vs-qa" in names and names[-1] == "report"
    assert not any(n.startswith("ipt.") and "nemotron" in n for n in names)  # every row in its own block


def test_print_config_shows_both_blocks_the_budgets_and_the_judges(capsys):
    from fitrain.cli import main

    assert main(["experiment", "table1-1.8b", "--print-config"]) == 0
    out = capsys.readouterr().out
    for text in ("- name: ipt", "- name: nemotron", "tokens: 23000000000.0", "epochs: 4", "tokens: 300000000000.0",
                 "model: gpt-5-mini", "model: gpt-4-turbo", "api_key_env: OPENAI_API_KEY",
                 "pretrained: meta-llama/Meta-Llama-3-8B"):
        assert text in out, text


@pytest.mark.parametrize("recipe", LADDER)
def test_the_dry_run_is_readable_and_under_20_kb(recipe, capsys):
    from fitrain.cli import main

    assert main(["experiment", recipe, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert len(out.encode()) < 20_000, len(out.encode())
    assert "shard-00001/" not in out and "shard-0102[0-2]/pairs.parquet" in out  # globs, never every shard
    assert "trains 92B tokens" in out and "trains 300B tokens (beyond the paper)" in out


def test_the_size_ladder_shares_tokenizer_sequence_length_blocks_and_judges():
    cfgs = [load_experiment(r) for r in LADDER]
    assert [c.train.model.preset for c in cfgs] == ["300m", "1.8b", "7b"]
    for c in cfgs:
        assert c.tokenizer == cfgs[1].tokenizer and c.tokenizer.pretrained == "meta-llama/Meta-Llama-3-8B"
        assert c.prepare.pack.seq_len == 4096 and c.train.model.max_seq_len >= 4096
        assert c.blocks == cfgs[1].blocks and c.eval.judge == cfgs[1].eval.judge and c.eval.judges == cfgs[1].eval.judges


def test_a_block_inherits_what_it_does_not_set_and_errors_name_the_block(tmp_path):
    cfg = load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'run'}"])
    cfg.blocks = [_block("a", budget={"epochs": 2}), _block("b", arms=["fi"], corpus={"max_documents": 7})]
    a, b = block_config(cfg, "a"), block_config(cfg, "b")
    assert a.arm_set().names == cfg.arm_set().names and a.train.budget_from_epochs == 2 and not a.train.max_tokens
    assert b.arm_set().names == ["fi"] and b.corpus.max_documents == 7 and b.train.wandb.group == cfg.name
    cfg.blocks = [_block("a", corpus={"max_docs": 7})]
    with pytest.raises(FitrainError, match=r"block 'a': corpus: .*max_docs"):
        block_config(cfg, "a")
    cfg.blocks = [_block("a"), _block("a")]
    with pytest.raises(FitrainError, match=r"block names must be unique"):
        validate_config(cfg)
    cfg.blocks = [_block("a.b")]
    with pytest.raises(FitrainError, match=r"block name 'a.b' must start with a letter"):
        validate_config(cfg)


def test_token_counts_as_people_write_them():
    assert [tokens_text(n) for n in (23e9, 300e9, 1.5e6, 40_000, 92e9, 1.234567e9)] == [
        "23B", "300B", "1.5M", "40,000", "92B", "1,234,567,000"]


def _block(name, **kw):
    from fitrain.core.config import from_dict
    from fitrain.pipeline.blocks import BlockConfig

    return from_dict(BlockConfig, {"name": name, **kw})


def test_the_judges_api_key_is_read_from_the_environment_and_never_frozen(tmp_path, monkeypatch):
    from fitrain.core.llm import api_key_of
    from fitrain.pipeline.run import save_config

    secret = "sk-table1-never-in-a-file"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    cfg = load_experiment("table1-1.8b", [f"run_dir={tmp_path / 'run'}"])
    assert api_key_of(cfg.eval.judge.llm) == secret
    text = save_config(cfg, log=lambda m: None).read_text()
    assert secret not in text and "api_key_env: OPENAI_API_KEY" in text


def test_the_report_names_each_judged_columns_judge_and_flags_one_not_the_papers(tmp_path):
    from fitrain.pipeline.runners import judges_lines

    cfg = load_experiment("table1-1.8b", [f"run_dir={tmp_path / 'run'}"])
    lines = "\n".join(judges_lines(cfg))
    assert "| mixeval | gpt-5-mini (https://api.openai.com/v1) | gpt-5-mini | the paper's judge |" in lines
    assert "| mtbench101 | gpt-5-mini (https://api.openai.com/v1) | gpt-5-mini | the paper's judge |" in lines
    assert "| pairwise | gpt-4-turbo (https://api.openai.com/v1) | gpt-4-turbo | the paper's judge |" in lines
    local = load_experiment("table1-1.8b", [f"run_dir={tmp_path / 'run'}", "eval.judge.serve.enabled=true",
                                            "eval.judge.llm.model=/models/flowaicom/Flow-Judge-v0.1"])
    lines = "\n".join(judges_lines(local))
    assert ("| mixeval | /models/flowaicom/Flow-Judge-v0.1 (started by the eval job) | gpt-5-mini | NOT the paper's "
            "judge: scores are not on its scale |") in lines
    assert "| pairwise | gpt-4-turbo (started by the eval job) | gpt-4-turbo | the paper's judge |" in lines
