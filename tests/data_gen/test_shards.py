"""The shard runner must not mix two shardings of one stage: shard i of n holds rows j % n == i, so a rerun
with another shard count that skipped the finished shards of the old count would duplicate and lose rows."""
import pytest

from data_gen.shards import StageStats, run_shards
from fitrain.core.errors import FitrainError


def _work(rows):
    def work(i, out):
        st = StageStats("t")
        st.outputs = len([j for j in range(rows) if j % n_of[out.parent] == i])
        return st
    return work


n_of = {}


def test_resume_with_another_shard_count_is_refused(tmp_path):
    stage = tmp_path / "stage"
    n_of[stage] = 2
    res = run_shards("t", stage, 2, _work(10), shard=0, log=lambda s: None)  # killed after shard 0
    assert res["ran"] == [0] and not res["complete"]
    n_of[stage] = 3
    with pytest.raises(FitrainError, match="shard"):
        run_shards("t", stage, 3, _work(10), log=lambda s: None)


def test_finished_stage_rerun_with_another_shard_count_is_refused(tmp_path):
    stage = tmp_path / "stage"
    n_of[stage] = 3
    assert run_shards("t", stage, 3, _work(10), log=lambda s: None)["complete"]
    n_of[stage] = 2
    with pytest.raises(FitrainError, match="shard"):
        run_shards("t", stage, 2, _work(10), log=lambda s: None)
    # the same count resumes and skips as before
    res = run_shards("t", stage, 3, _work(10), log=lambda s: None)
    assert res["skipped"] == [0, 1, 2] and res["complete"] and res["stats"]["out"] == 10
