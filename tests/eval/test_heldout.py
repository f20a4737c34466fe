import shutil

import pytest

from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout
from fitrain_eval.heldout import HeldoutConfig, evaluate_heldout, per_item_losses
from fitrain_eval.items import ItemScores


def test_per_item_losses_add_up_to_the_training_validation_loss(tiny_model_dir, pairs_shards):
    """The per-pair sums of CE and answer tokens equal what training's validation computes on the same rows
    (fitrain.train.loss.sum_cross_entropy on the loader's batches)."""
    import torch
    from transformers import AutoModelForCausalLM

    from fitrain.data.loader import batch_arrays
    from fitrain.data.shards import open_prepared
    from fitrain.train.loss import sum_cross_entropy
    from fitrain.train.model import forward_logits

    data = open_prepared(pairs_shards)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    losses = per_item_losses(model, data, batch_size=3, max_rows=5, pad_id=data.manifest.pad_token_id)
    tokens, mask, seg = data.rows(range(5))
    b = {k: torch.from_numpy(v) for k, v in batch_arrays(tokens, mask, seg, data.manifest.pad_token_id).items()}
    with torch.no_grad():
        total, count = sum_cross_entropy(forward_logits(model, b), b["labels"])
    assert sum(n for _, n in losses.values()) == count
    assert sum(ce for ce, _ in losses.values()) == pytest.approx(float(total), rel=1e-5)
    segs = {f"{r}:{s}" for r in range(5) for s in set(seg[r].tolist()) - {0}}
    assert set(losses) == segs  # every pair is an item


def test_evaluate_heldout_finds_the_experiments_heldout_pairs(tiny_model_dir, pairs_shards, tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    shutil.copytree(tiny_model_dir, lay.train("fi").hf)
    shutil.copytree(pairs_shards, lay.prepared("heldout"))
    m = evaluate_heldout(HeldoutConfig(enabled=True, max_rows=4), lay.train("fi").hf, lay.eval("fi"),
                         lay.train("fi").root)
    items = ItemScores.load(lay.eval("fi") / "items" / "heldout__answer_loss.jsonl")
    assert len(items.scores) == m["heldout/n_items"] and not items.higher_is_better
    w = items.weights
    assert sum(w.values()) == m["heldout/tokens"]
    assert m["heldout/answer_loss"] == pytest.approx(sum(items.scores[k] * w[k] for k in w) / sum(w.values()))
    with pytest.raises(FitrainError, match="heldout.enabled needs the held-out pairs"):
        evaluate_heldout(HeldoutConfig(enabled=True), tiny_model_dir, tmp_path / "o", tiny_model_dir)


def test_heldout_documents_are_refused(tiny_model_dir, documents_shards, tmp_path):
    with pytest.raises(FitrainError, match="holds documents, not pairs"):
        evaluate_heldout(HeldoutConfig(enabled=True, path=str(documents_shards)), tiny_model_dir, tmp_path, None)


def test_a_damaged_heldout_shard_is_a_clear_error(tiny_model_dir, pairs_shards, tmp_path):
    """Held-out evaluation checks the shard files the way training does (fitrain.data.shards.check_files)."""
    data = tmp_path / "heldout"
    shutil.copytree(pairs_shards, data)
    p = data / "shard_00000.tokens.npy"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(FitrainError, match=r"the bytes of shard_00000.tokens.npy changed .*re-run the same `fitrain"):
        evaluate_heldout(HeldoutConfig(enabled=True, path=str(data)), tiny_model_dir, tmp_path / "o", None)
    p.write_bytes(bytes(raw[:-8]))
    with pytest.raises(FitrainError, match="shard_00000.tokens.npy .*truncated"):
        evaluate_heldout(HeldoutConfig(enabled=True, path=str(data)), tiny_model_dir, tmp_path / "o", None)
    assert not (tmp_path / "o").exists()
