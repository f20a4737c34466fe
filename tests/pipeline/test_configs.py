"""Derived configs that guard the data: the corpus file list is frozen by the corpus step."""
import pytest

from fitrain.core.errors import FitrainError
from fitrain.pipeline.configs import corpus_files, data_gen_config
from fitrain.pipeline.graph import experiment_steps
from fitrain.pipeline.run import load_experiment, run_step


def test_the_corpus_file_list_is_frozen_once_the_corpus_step_ran(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"part-{i}.jsonl").write_text(f'{{"id": "d{i}", "text": "document number {i} with words"}}\n')
    cfg = load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'run'}", "corpus.builtin=false",
                                       f"corpus.paths=[{corpus}/*.jsonl]", "corpus.id_column=id"])
    steps = {s.name: s for s in experiment_steps(cfg)}
    assert run_step(cfg, steps["corpus"], log=lambda m: None) == "done"
    assert corpus_files(cfg) == sorted(str(p) for p in corpus.glob("*.jsonl"))
    (corpus / "part-3.jsonl").write_text('{"id": "d3", "text": "a late file"}\n')  # would shift j % num_shards
    with pytest.raises(FitrainError, match=r"corpus files changed since the corpus step.*added \[.*part-3"):
        data_gen_config(cfg)
    (corpus / "part-3.jsonl").unlink()
    (corpus / "part-0.jsonl").write_text('{"id": "d0", "text": "rewritten"}\n')
    with pytest.raises(FitrainError, match=r"changed size \[.*part-0"):
        corpus_files(cfg)
    assert corpus_files(cfg, check=False) == [f"{corpus}/*.jsonl"]  # a dry run reads nothing


def test_the_frozen_config_is_not_rewritten_by_every_job(tmp_path):
    import os

    from fitrain.pipeline.run import save_config

    cfg = load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'run'}"])
    path = save_config(cfg, log=lambda m: None)
    os.utime(path, ns=(1, 1))
    assert save_config(cfg, log=lambda m: None) == path and path.stat().st_mtime_ns == 1  # same text: untouched
