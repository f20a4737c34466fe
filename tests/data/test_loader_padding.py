"""Review: the trainer counts tokens as ``input_ids != pad_id``; the shards store 0 (= EOS in fitrain's
tokenizers) at padding positions, so the loader must put the pad id there or padding is counted as text."""
import json

from fitrain.data.loader import PackedLoader
from fitrain.train.microbatches import count_step


def test_trainer_token_count_excludes_padding(pairs_shards):
    m = json.loads((pairs_shards / "manifest.json").read_text())
    pad = m["tokenizer"]["pad_token_id"]
    assert m["counts"]["padding_tokens"] > 0 and pad != 0
    loader = PackedLoader(pairs_shards, batch_size=6, shuffle=False, remainder="drop", rank=0, world_size=1)
    assert loader.epoch_info()["dropped_rows"] == 0 and loader.epoch_info()["wrapped_rows"] == 0
    tokens = sum(count_step([b], pad)[0] for b in loader)
    assert tokens == m["counts"]["total_tokens"]
