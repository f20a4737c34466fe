"""Packer: items whole when they fit, counted overlong policies, boundary masks, determinism, efficiency."""
import numpy as np
import pytest

from fitrain.core.errors import FitrainError
from fitrain.data.packing import PackConfig, Packer, ShardWriter


def item(n, start=1, first_masked=True):
    ids = np.arange(start, start + n, dtype=np.int64) % 1000
    mask = np.ones(n, dtype=np.uint8)
    if first_masked:
        mask[0] = 0
    return ids, mask


def pack(lengths, seq_len=64, policy="truncate", window=50, max_open=8):
    rows = []
    p = Packer(seq_len, policy, rows.append, window=window, max_open_rows=max_open)
    for k, n in enumerate(lengths):
        p.add(*item(n, start=k))
    p.flush()
    return rows, p


def test_items_packed_whole_and_all_placed():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 64, size=2000).tolist()  # uniform lengths: a hard case for bin packing
    rows, p = pack(lengths, window=500, max_open=32)
    placed = sorted(len(ids) for r in rows for ids, _ in r)
    assert placed == sorted(lengths)  # nothing lost, nothing duplicated, nothing cut
    assert all(sum(len(i) for i, _ in r) <= 64 for r in rows)
    slots = len(rows) * 64
    assert sum(lengths) / slots > 0.97  # 0.978 measured; whole-input BFD gives 0.995
    again, _ = pack(lengths, window=500, max_open=32)  # deterministic
    assert [np.concatenate([i for i, _ in r]).tolist() for r in rows] == \
        [np.concatenate([i for i, _ in r]).tolist() for r in again]


@pytest.mark.parametrize("policy", ["truncate", "drop", "split"])
def test_overlong_policies_are_counted(policy):
    rows, p = pack([10, 150, 64, 65], seq_len=64, policy=policy)
    o = p.overlong
    got = sorted(len(i) for r in rows for i, _ in r)
    if policy == "truncate":
        assert got == [10, 64, 64, 64] and o["truncated"] == 2 and o["truncated_tokens"] == 86 + 1
    elif policy == "drop":
        assert got == [10, 64] and o["dropped"] == 2 and o["dropped_tokens"] == 215
    else:
        assert got == sorted([10, 64, 64, 64, 22, 64, 1]) and o["split"] == 2 and o["split_pieces"] == 5
        assert sum(got) == 10 + 150 + 64 + 65
        for r in rows:  # a continuation piece's first token is never a target
            for ids, mask in r:
                assert mask[0] == 0


def test_truncation_that_leaves_no_target_drops_the_item():
    ids = np.arange(100)
    mask = np.zeros(100, dtype=np.uint8)
    mask[80:] = 1  # the answer starts after seq_len
    rows = []
    p = Packer(64, "truncate", rows.append)
    assert p.add(ids, mask) is False
    p.flush()
    assert rows == [] and p.overlong["truncated_to_nothing"] == 1 and p.overlong["dropped_tokens"] == 100


def test_shard_writer_rows_segments_and_vocab_check(tmp_path):
    w = ShardWriter(tmp_path, seq_len=8, vocab_size=1000, rows_per_shard=2)
    w.add_row([item(3), item(4, 7)])
    w.add_row([item(8)])
    w.add_row([item(2)])
    shards = w.close()
    assert [s.rows for s in shards] == [2, 1]
    seg = np.load(tmp_path / "shard_00000.seg.npy")
    assert seg[0].tolist() == [1, 1, 1, 2, 2, 2, 2, 0] and seg[1].tolist() == [1] * 8
    assert np.load(tmp_path / "shard_00000.tokens.npy").dtype == np.uint16
    assert shards[0].total_tokens == 15 and shards[0].padding_tokens == 1 and shards[0].segments == 3
    big = ShardWriter(tmp_path / "b", seq_len=8, vocab_size=70000, rows_per_shard=1)
    big.add_row([(np.array([69999, 5]), np.array([0, 1], dtype=np.uint8))])
    assert np.load(tmp_path / "b" / "shard_00000.tokens.npy").dtype == np.uint32
    with pytest.raises(FitrainError, match="outside the vocabulary"):
        w.add_row([(np.array([1000]), np.array([0], dtype=np.uint8))])


def test_pack_config_validation():
    assert PackConfig().policy("documents") == "split" and PackConfig().policy("pairs") == "truncate"
    with pytest.raises(FitrainError, match="documents only"):
        PackConfig(overlong="split").policy("pairs")
    with pytest.raises(FitrainError, match="must be one of"):
        PackConfig(overlong="squash").policy("pairs")
    with pytest.raises(FitrainError, match="seq_len"):
        PackConfig(seq_len=1)
