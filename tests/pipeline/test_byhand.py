"""The by-hand lines of a dry run (fitrain.pipeline.byhand) and the shard globs they name
(fitrain.pipeline.configs.range_globs)."""
import fnmatch
import random

import pytest

from fitrain.pipeline.configs import final_pairs, range_globs
from fitrain.pipeline.run import load_experiment


@pytest.mark.parametrize("lo,hi", [(0, 1022), (0, 0), (3, 3), (0, 9), (5, 123), (999, 1000), (0, 99)]
                         + [tuple(sorted(random.Random(i).sample(range(3000), 2))) for i in range(40)])
def test_range_globs_match_exactly_the_range_in_order(lo, hi):
    names = [f"{i:05d}" for i in range(3100)]
    globs = range_globs(lo, hi, 5)
    assert [n for g in globs for n in names if fnmatch.fnmatchcase(n, g)] == names[lo:hi + 1]
    assert len(globs) <= 9


def test_a_by_hand_prepare_names_the_same_files_as_the_step(tmp_path):
    from fitrain.data.readers import expand_paths

    cfg = load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'run'}", "data_gen.num_shards=23", "heldout_shards=2"])
    files = [cfg.layout.data_gen("final") / f"shard-{i:05d}" / "pairs.parquet" for i in range(23)]
    for f in files:
        f.parent.mkdir(parents=True)
        f.write_text("x")
    files = [str(f) for f in files]
    assert expand_paths(final_pairs(cfg, check=False)) == final_pairs(cfg) == files[:21]
    assert expand_paths(final_pairs(cfg, heldout=True, check=False)) == files[21:]


def test_by_hand_lines_name_the_run_dir_once_and_write_later_commands_against_earlier_ones(tmp_path, capsys):
    from fitrain.cli import main

    assert main(["experiment", "quickstart", f"run_dir={tmp_path / 'run'}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count(str(tmp_path / "run")) == 2  # the header and RUN=
    assert "by hand: fitrain train run_dir=$RUN/train/fi " in out
    assert "by hand: fitrain train <step " in out and "run_dir=$RUN/train/standard" in out
