"""A two-block experiment for real on tiny data (fitrain.pipeline.blocks): an IPT-like block (standard
pre-training on its corpus and a released instruction-augmented corpus, an absolute budget x 2 epochs) and
a Nemotron-like block (FineInstructions and standard on the built-in corpus, the FI arm's tokens x 3), every
arm with one pretrained tokenizer saved by transformers (Llama-3-style special tokens) through prepare,
training, export and eval; the report groups the rows by block, differences taken within each block."""
from __future__ import annotations

import json

import pytest

from fitrain.core.io import read_json
from fitrain.core.recipes import resolve_recipe
from fitrain.pipeline.run import load_experiment, run_experiment
from tests.helpers.llama3_tokenizer import save_llama3_style_tokenizer
from tests.pipeline.test_arms_e2e import _logger, _texts, write_ipt_shard

pytestmark = pytest.mark.slow

PER_PASS, IPT_EPOCHS, NEM_EPOCHS = 2000, 2, 2


@pytest.mark.timeout(900)
def test_two_blocks_train_their_own_budgets_with_a_pretrained_tokenizer_and_report_by_block(tmp_path):
    tok = save_llama3_style_tokenizer(tmp_path / "llama3-tok", _texts(120), vocab_size=600)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(_texts(30))))
    ipt = write_ipt_shard(tmp_path / "ipt", _texts(20, offset=100))
    blocks = [
        {"name": "ipt", "title": "IPT corpus", "budget": {"tokens": PER_PASS, "epochs": IPT_EPOCHS},
         "corpus": {"builtin": False, "paths": [str(docs)], "id_column": "id"},
         "arms": [{"name": "standard", "kind": "corpus", "paths": [str(docs)]},
                  {"name": "ipt", "kind": "corpus", "paths": [ipt]}]},
        {"name": "nem", "title": "Nemotron-like corpus", "budget": {"epochs": NEM_EPOCHS}, "arms": ["fi", "standard"]}]
    recipe = tmp_path / "blocks.yaml"  # the blocks through the YAML schema, as a recipe gives them
    recipe.write_text(json.dumps({"_base_": str(resolve_recipe("quickstart")), "blocks": blocks}))
    cfg = load_experiment(str(recipe), [
        f"run_dir={tmp_path / 'run'}", "name=blocks-e2e", "heldout_shards=0", "corpus.max_documents=36",
        "data_gen.num_shards=1", f"tokenizer.pretrained={tok}", "tokenizer.pad_token=<|reserved_special_token_0|>",
        "train.model.dim=64", "train.model.n_layers=2", "train.model.ffn_dim=192", "train.log_every=4", "train.val_every=0", "train.wandb.mode=disabled", "train.data.max_epochs=0",
        "eval.lm_eval.tasks=[fitrain_mixeval_mc]", "eval.lm_eval.formats=[plain]", "eval.lm_eval.limit=8",
        "eval.heldout.enabled=false", "report.bootstrap=200"])
    lines: list[str] = []
    run_experiment(cfg, log=_logger(lines))
    root = cfg.root
    # each block's arms train exactly their block's budget
    for arm in ("standard", "ipt"):
        s = read_json(root / "blocks" / "ipt" / "train" / arm / "summary.json")
        assert s["tokens"] == PER_PASS * IPT_EPOCHS, (arm, s["tokens"])
    fi_tokens = read_json(root / "blocks" / "nem" / "prepared" / "fi" / "manifest.json")["counts"]["total_tokens"]
    for arm in ("fi", "standard"):
        assert read_json(root / "blocks" / "nem" / "train" / arm / "summary.json")["tokens"] == NEM_EPOCHS * fi_tokens
    # one pretrained tokenizer everywhere: prepared with it, trained, exported with it (its pad, its specials)
    for block, arm in (("ipt", "ipt"), ("nem", "fi")):
        b = root / "blocks" / block
        assert json.loads((b / "tokenizer" / "fitrain_tokenizer.json").read_text())["pretrained"] == str(tok)
        hf = json.loads((b / "train" / arm / "hf" / "tokenizer_config.json").read_text())
        assert (hf["eos_token"], hf["pad_token"]) == ("<|end_of_text|>", "<|reserved_special_token_0|>"), hf
        assert read_json(b / "eval" / arm / "results.json")
    # epochs in the token table: passes over the arm's own prepared data
    tm = read_json(root / "report" / "token_matching.json")
    assert tm["nem"]["runs"]["fi"]["epochs"] == NEM_EPOCHS and tm["ipt"]["matched_within_one_sequence"]
    # the report: one section per block, each arm compared with its own block's primary arm
    report = (root / "report" / "report.md").read_text()
    ipt_part, nem_part = report.split("## Block ipt: IPT corpus")[1].split("## Block nem: Nemotron-like corpus")
    assert f"{PER_PASS:,} tokens x {IPT_EPOCHS} epoch(s)" in report.split("## Block nem")[0]
    assert "Δ" in ipt_part and "Δ" in nem_part
    assert "| ipt " in ipt_part and "| fi " not in ipt_part and "| fi " in nem_part and "| ipt " not in nem_part
    assert f"| standard | standard | 0 | standard | {PER_PASS * IPT_EPOCHS:,} |" in ipt_part

