"""The shared session fixtures other homes build on: prepared FI pairs and standard-arm documents."""
import json

from fitrain.data.loader import PackedLoader


def test_pairs_and_documents_shards_fixtures(pairs_shards, documents_shards):
    fi = json.loads((pairs_shards / "manifest.json").read_text())
    std = json.loads((documents_shards / "manifest.json").read_text())
    assert fi["kind"] == "pairs" and std["kind"] == "documents"
    assert fi["counts"]["pairs"] == 163 and std["counts"]["documents"] == fi["counts"]["documents"] == 163
    assert fi["seq_len"] == std["seq_len"] == 256
    b = next(iter(PackedLoader(pairs_shards, batch_size=4, rank=0, world_size=1)))
    assert b["input_ids"].shape == (4, 256)
    assert 0 < (b["labels"] != -100).sum() < (b["input_ids"] != 0).sum()
