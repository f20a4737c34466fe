"""PackedLoader: batch contract, rank-disjoint epochs, exact resume (also with workers), refusals."""
import numpy as np
import pytest

from fitrain.core.errors import FitrainError
from fitrain.data.loader import PackedLoader, batch_arrays
from fitrain.data.manifest import Manifest
from fitrain.data.shards import fingerprint, write_shard

T = 16


def make_prepared(directory, rows_per_shard=(7, 6, 4), salt=0):
    """Synthetic shards; token [r, 0] holds the global row id so tests can see which rows they got."""
    shards, g = [], 0
    for i, n in enumerate(rows_per_shard):
        rng = np.random.default_rng(i + 100 * salt)
        tokens = rng.integers(0, 900, size=(n, T)).astype(np.uint16)
        tokens[:, 0] = np.arange(g, g + n)
        seg = np.zeros((n, T), dtype=np.uint16)
        for r in range(n):
            cuts = sorted(rng.choice(np.arange(1, T), size=2, replace=False))
            seg[r, :cuts[0]] = 1
            seg[r, cuts[0]:cuts[1]] = 2
        mask = ((seg > 0) & (rng.random((n, T)) < 0.7)).astype(np.uint8)
        shards.append(write_shard(directory, i, tokens, mask, seg))
        g += n
    Manifest(fingerprint=fingerprint(T, shards), seq_len=T, shards=shards).write(directory)
    return directory


@pytest.fixture
def prepared(tmp_path):
    return make_prepared(tmp_path / "p")


def row_ids(batches):
    return [int(x) for b in batches for x in b["input_ids"][:, 0]]


def test_batch_contract():
    tokens = np.array([[5, 6, 7, 8, 9, 0]], dtype=np.uint16)
    seg = np.array([[1, 1, 2, 2, 2, 0]], dtype=np.uint16)
    mask = np.array([[0, 1, 1, 1, 1, 0]], dtype=np.uint8)
    b = batch_arrays(tokens, mask, seg)
    assert b["labels"].tolist() == [[-100, 6, -100, 8, 9, -100]]  # boundary + padding masked
    assert b["position_ids"].tolist() == [[0, 1, 0, 1, 2, 0]]
    assert b["input_ids"].dtype == np.int64 and b["labels"].dtype == np.int64


def test_loader_batches_match_shards(prepared):
    import torch

    loader = PackedLoader(prepared / "manifest.json", batch_size=3, shuffle=False, rank=0, world_size=1)
    b = next(iter(loader))
    assert set(b) == {"input_ids", "labels", "position_ids"}
    assert all(v.dtype == torch.int64 and v.shape == (3, T) for v in b.values())
    assert b["input_ids"][:, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("world,batch", [(1, 1), (2, 3), (3, 2), (4, 2)])
def test_ranks_disjoint_and_cover_every_row(prepared, world, batch):
    n = 17
    for remainder in ("wrap", "drop"):
        per_rank = [row_ids(PackedLoader(prepared, batch, seed=3, rank=r, world_size=world, remainder=remainder))
                    for r in range(world)]
        allrows = sum(per_rank, [])
        info = PackedLoader(prepared, batch, seed=3, rank=0, world_size=world, remainder=remainder).epoch_info()
        if remainder == "wrap":
            assert sorted(set(allrows)) == list(range(n))
            assert len(allrows) == n + info["wrapped_rows"]
        else:
            assert len(allrows) == len(set(allrows)) == n - info["dropped_rows"]
        if n % (world * batch) == 0 or remainder == "drop":
            for i in range(world):
                for j in range(i):
                    assert not set(per_rank[i]) & set(per_rank[j])


def test_divisible_epoch_is_exact_partition(tmp_path):
    d = make_prepared(tmp_path / "q", (6, 6))
    per_rank = [row_ids(PackedLoader(d, 3, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert sorted(per_rank[0] + per_rank[1]) == list(range(12))


def test_epochs_reshuffle_and_state_advances(prepared):
    loader = PackedLoader(prepared, batch_size=4, seed=5, rank=0, world_size=1)
    e0 = row_ids(loader)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["rows_consumed"] == 0
    e1 = row_ids(loader)
    assert e0 != e1 and sorted(set(e0)) == sorted(set(e1)) == list(range(17))
    two = row_ids(PackedLoader(prepared, batch_size=4, seed=5, rank=0, world_size=1).iter_epochs(2))
    assert two == e0 + e1


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_is_exact(prepared, workers):
    def make():
        return PackedLoader(prepared, batch_size=2, seed=11, rank=1, world_size=2, num_workers=workers)

    reference = [b["input_ids"] for b in make().iter_epochs(3)]
    loader = make()
    got, it = [], loader.iter_epochs(3)
    for _ in range(7):  # 5 steps per epoch: stop in the middle of epoch 1
        got.append(next(it)["input_ids"])
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["rows_consumed"] == 4  # what the consumer got, not the prefetch
    del it
    resumed = make()
    resumed.load_state_dict(state)
    got += [b["input_ids"] for b in resumed.iter_epochs(2)][: len(reference) - 7]
    assert len(got) == len(reference)
    assert all((a == b).all() for a, b in zip(got, reference))


def test_refusals(prepared, tmp_path):
    loader = PackedLoader(prepared, batch_size=2, seed=0, rank=0, world_size=1)
    other = PackedLoader(make_prepared(tmp_path / "other", salt=1), batch_size=2, seed=0, rank=0, world_size=1)
    with pytest.raises(FitrainError, match="fingerprint"):
        loader.load_state_dict(other.state_dict())
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    loader.load_state_dict(state)
    with pytest.raises(FitrainError, match="before load_state_dict"):
        next(it)
    with pytest.raises(FitrainError, match="mid-epoch with a different batch_size"):
        PackedLoader(prepared, batch_size=1, rank=0, world_size=1).load_state_dict(state)
    with pytest.raises(FitrainError, match="no prepared data"):
        PackedLoader(tmp_path / "missing", batch_size=2)
    with pytest.raises(FitrainError, match="less than one global batch"):
        PackedLoader(prepared, batch_size=9, rank=0, world_size=2, remainder="drop")
    (prepared / "shard_00001.mask.npy").write_bytes(b"garbage")
    with pytest.raises(FitrainError, match="cannot read shard_00001.mask.npy"):
        PackedLoader(prepared, batch_size=2)


@pytest.mark.parametrize("remainder", ["wrap", "drop"])
def test_every_split_of_a_global_batch_reads_the_same_rows_at_every_step(prepared, remainder):
    """17 rows, a global batch of 16 (the epoch ends mid-batch): world 1, 2, 4 x micro-batch 1, 2, 4 (grad_accum
    the rest) read identical rows at every optimizer step, in the same global order, over 3 epochs; the
    remainder is applied per optimizer step (wrap: 2 steps of 16, the second ending with 15 rows again)."""
    global_batch, epochs = 16, 3

    def steps(world, micro):
        accum = global_batch // (world * micro)
        per_rank = [list(PackedLoader(prepared, micro, seed=4, rank=r, world_size=world, remainder=remainder,
                                      grad_accum=accum).iter_epochs(epochs)) for r in range(world)]
        n = len(per_rank[0])
        assert all(len(b) == n for b in per_rank) and n % accum == 0
        # reading order: micro-step, then rank
        flat = [row_ids([per_rank[r][m]]) for m in range(n) for r in range(world)]
        order = sum(flat, [])
        return [order[i:i + global_batch] for i in range(0, len(order), global_batch)]

    want = steps(1, 1)
    assert len(want) == epochs * (2 if remainder == "wrap" else 1) and all(len(s) == global_batch for s in want)
    for world in (1, 2, 4):
        for micro in (1, 2, 4):
            assert steps(world, micro) == want, (world, micro)
    if remainder == "wrap":   # each epoch: every row once, plus 15 rows repeated in its last step
        assert sorted(set(sum(want[:2], []))) == list(range(17)) and want[0] + want[1] != want[2] + want[3]
    info = PackedLoader(prepared, 2, rank=0, world_size=2, remainder=remainder, grad_accum=4).epoch_info()
    assert info["global_batch_rows"] == 16 and info["steps_per_epoch"] % 4 == 0
    assert info["wrapped_rows" if remainder == "wrap" else "dropped_rows"] == (15 if remainder == "wrap" else 1)


def test_a_state_resumes_under_another_split_of_the_same_global_batch(prepared):
    """A requeue on another cluster shape: 1 rank x 4 rows x grad_accum 4 stops after one optimizer step; 2 ranks
    x 2 rows x 4 and 4 ranks x 1 row x 4 continue with exactly the rows the 1-rank run reads next."""
    one = PackedLoader(prepared, 4, seed=2, rank=0, world_size=1, grad_accum=4)
    it = iter(one)
    [next(it) for _ in range(4)]
    state = one.state_dict()
    want = row_ids([next(it) for _ in range(4)])
    for world, micro in ((2, 2), (4, 1)):
        loaders = [PackedLoader(prepared, micro, seed=2, rank=r, world_size=world, grad_accum=4) for r in range(world)]
        for loader in loaders:
            loader.load_state_dict(state)
        per_rank = [list(iter(loader))[:4] for loader in loaders]
        assert sum((row_ids([per_rank[r][m]]) for m in range(4) for r in range(world)), []) == want
    with pytest.raises(FitrainError, match="mid-epoch with a different world_size, grad_accum"):
        PackedLoader(prepared, 4, seed=2, rank=0, world_size=2, grad_accum=1).load_state_dict(state)  # 8 rows
    mid = PackedLoader(prepared, 4, seed=2, rank=0, world_size=1, grad_accum=4)
    next(iter(mid))                                   # one micro-batch: not a step boundary
    with pytest.raises(FitrainError, match="mid-epoch with a different"):
        PackedLoader(prepared, 2, seed=2, rank=0, world_size=2, grad_accum=4).load_state_dict(mid.state_dict())
