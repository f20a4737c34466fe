"""A token id past the vocabulary (and so past the model's embedding) is refused by the data layer with one
line naming the shard, never an IndexError inside the model (fitrain.data.shards): prepare records each
shard's largest id, opening the data checks it, every batch read checks the ids it holds, and `fitrain
verify` recounts it."""
import json
import os
import shutil

import numpy as np
import pytest

from fitrain.core.errors import FitrainError
from fitrain.data.integrity import verify_prepared
from fitrain.data.manifest import checksum
from fitrain.data.shards import open_prepared
from tests.commands.test_bad_state import _train_argv
from tests.helpers.cli import assert_clean_error, run_main


@pytest.fixture
def data(tmp_path, pairs_shards):
    d = tmp_path / "data"
    shutil.copytree(pairs_shards, d)
    return d


def _poke(path, row, col, value):
    """Write one token id in place, keeping the file's size and modification time (as `touch -r` would)."""
    st = os.stat(path)
    a = np.load(path, mmap_mode="r+")
    a[row, col] = value
    a.flush()
    del a
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _resign(directory, edit):
    m = json.loads((directory / "manifest.json").read_text())
    edit(m)
    m["checksum"] = checksum(m)
    (directory / "manifest.json").write_text(json.dumps(m))


def test_prepare_records_the_largest_token_id_of_each_shard(pairs_shards):
    d = open_prepared(pairs_shards)
    tokens = np.load(pairs_shards / "shard_00000.tokens.npy")
    seg = np.load(pairs_shards / "shard_00000.seg.npy")
    assert d.manifest.shards[0].max_token_id == int(tokens[seg > 0].max()) < d.manifest.vocab_size


def test_an_id_past_the_vocabulary_written_behind_the_manifests_back_is_caught_when_read(data):
    vocab = open_prepared(data).manifest.vocab_size
    _poke(data / "shard_00000.tokens.npy", 2, 5, vocab + 7)
    d = open_prepared(data)
    d.validate()  # size and mtime as recorded: the cheap check cannot see it
    with pytest.raises(FitrainError, match=rf"shard_00000.tokens.npy row 2 holds token id {vocab + 7}, past the "
                                           rf"{vocab}-token vocabulary"):
        d.rows([0, 1, 2, 3])
    d.rows([0, 1])  # rows without it read fine


def test_a_resigned_manifest_recording_an_id_past_the_vocabulary_is_refused_at_open(data):
    _resign(data, lambda m: m["shards"][0].update(max_token_id=m["vocab_size"] + 1))
    with pytest.raises(FitrainError, match="shard_00000.tokens.npy holds token id .* past the"):
        open_prepared(data).validate()


def test_a_smaller_embedding_than_the_data_needs_is_refused(pairs_shards):
    d = open_prepared(pairs_shards)
    top = max(s.max_token_id for s in d.manifest.shards)
    d.check_token_ids(top + 1)
    with pytest.raises(FitrainError, match=f"past the {top}-token vocabulary"):
        d.check_token_ids(top)


def test_verify_recounts_the_largest_token_id(data):
    _resign(data, lambda m: m["shards"][0].update(max_token_id=m["shards"][0]["max_token_id"] - 1))
    v = verify_prepared(data)
    assert not v.ok and any("largest token id" in p for p in v.problems)


def test_an_older_manifest_without_the_record_still_opens(data):
    _resign(data, lambda m: [s.pop("max_token_id") for s in m["shards"]])
    d = open_prepared(data)
    d.validate()
    assert d.manifest.shards[0].max_token_id is None


def test_train_on_a_shard_with_an_id_past_the_embedding_exits_2_naming_it(tmp_path, data, capsys):
    vocab = open_prepared(data).manifest.vocab_size
    tokens = np.load(data / "shard_00000.tokens.npy", mmap_mode="r")
    for r in range(tokens.shape[0]):
        _poke(data / "shard_00000.tokens.npy", r, 0, vocab + 3)  # every row: the first batch holds one
    r = run_main(_train_argv(tmp_path, data), capsys)
    assert_clean_error(r, "shard_00000.tokens.npy row", f"token id {vocab + 3}", "embedding")
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("workers", [0, 1])
def test_the_loader_reports_it_in_one_line_also_from_a_worker_process(data, workers):
    from fitrain.data.loader import PackedLoader

    vocab = open_prepared(data).manifest.vocab_size
    n = np.load(data / "shard_00000.tokens.npy", mmap_mode="r").shape[0]
    for r in range(n):
        _poke(data / "shard_00000.tokens.npy", r, 1, vocab)
    loader = PackedLoader(data, batch_size=2, shuffle=False, rank=0, world_size=1, num_workers=workers)
    with pytest.raises(FitrainError) as e:
        next(iter(loader))
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)
    assert str(e.value).startswith(f"prepared data {data}: shard_00000.tokens.npy row ")
