"""Damaged prepared data, damaged or mismatched checkpoints, full disks and unwritable places, through the CLI:
exit 2, one ``error:`` line naming the file, no traceback, and nothing left that a later command would trust.

Disk faults are simulated three ways, as marked per case: a file standing where a directory is expected (a
real ENOTDIR/EEXIST from the kernel), ``os.fsync`` monkeypatched to raise ENOSPC (what a full disk or quota
reports when data is flushed; every atomic write fsyncs before its rename), and ``os.open``/``os.mkdir``
monkeypatched to raise EROFS for one directory (a read-only mount: tests run as root, so chmod stops nothing).
tests/commands/test_disk_real.py does the same on a real full tmpfs and a real read-only bind mount where
mounting is permitted."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import trainrun as th
from tests.helpers.cli import assert_clean_error, run_main


def _train_argv(tmp: Path, data: Path, *extra: str, run: Path | None = None) -> list[str]:
    return ["train", "train/fi-tiny", f"data.path={data}", f"run_dir={run or tmp / 'run'}", "max_steps=2",
            "progress_bar=false", "wandb.mode=disabled", "export_hf=false", "data.micro_batch_size=4", *extra]


@pytest.fixture
def data(tmp_path, pairs_shards) -> Path:
    """A private copy of the shared prepared pairs (mtimes kept, as any copy with -p)."""
    d = tmp_path / "data"
    shutil.copytree(pairs_shards, d)
    return d


@pytest.fixture(scope="module")
def trained(pairs_shards, tmp_path_factory) -> Path:
    """A 2-step run with its final checkpoint."""
    from fitrain.train.trainer import train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(th.tiny_config(run, pairs_shards, max_steps=2, export_hf=False))
    return run


def _no_summary(run: Path) -> bool:
    return not (run / "summary.json").exists() and not (run / "hf" / "_SUCCESS").exists()


# ------------------------------------------------------------------------------------ prepared data
def test_unfinished_prepare_is_refused(tmp_path, data, capsys):
    (data / "manifest.json").unlink()
    assert_clean_error(run_main(_train_argv(tmp_path, data), capsys), "manifest.json is missing", "re-run it")
    assert _no_summary(tmp_path / "run") and not (tmp_path / "run").exists()


def test_hand_edited_manifest_is_refused(tmp_path, data, capsys):
    m = json.loads((data / "manifest.json").read_text())
    m["counts"]["total_tokens"] = int(m["counts"]["total_tokens"] * 1.5)
    (data / "manifest.json").write_text(json.dumps(m, indent=2))
    r = run_main(_train_argv(tmp_path, data, "max_steps=0", f"budget_from={data}"), capsys)
    assert_clean_error(r, "manifest.json was changed after prepare wrote it", "fitrain verify")
    assert not (tmp_path / "run").exists()
    r = run_main(["verify", data], capsys)
    assert_clean_error(r, "changed after prepare")
    assert r.out.count("re-run the same `fitrain prepare`") == 1 and "fitrain verify" not in r.out  # said once


@pytest.mark.parametrize("part", ["tokens", "mask"])
def test_bytes_overwritten_inside_a_shard_are_caught(tmp_path, data, capsys, part):
    p = data / f"shard_00000.{part}.npy"
    with open(p, "r+b") as f:  # same size, new bytes in the middle
        f.seek(p.stat().st_size // 2)
        f.write(b"\x07\x07\x07\x07")
    assert_clean_error(run_main(_train_argv(tmp_path, data), capsys), p.name, "changed after prepare", "rebuild")
    r = run_main(["verify", data], capsys)
    assert_clean_error(r, "failed", p.name)
    assert r.out.startswith("FAILED")


def test_truncated_shard_is_refused_with_a_hint_and_prepare_rebuilds_it(tmp_path, tokenizer_dir, dolly_pairs_file,
                                                                       capsys):
    out = tmp_path / "prep"
    argv = ["prepare", f"input.paths=[{dolly_pairs_file}]", f"tokenizer={tokenizer_dir}", "pack.seq_len=64",
            "progress=false", f"out={out}"]
    assert run_main(argv, capsys).rc == 0
    fp = json.loads((out / "manifest.json").read_text())["fingerprint"]
    p = out / "shard_00000.seg.npy"
    p.write_bytes(p.read_bytes()[:-100])
    r = run_main(_train_argv(tmp_path, out, "model.max_seq_len=64"), capsys)
    assert_clean_error(r, "shard_00000.seg.npy", "truncated", "re-run the same `fitrain prepare`")
    r = run_main(argv, capsys)  # the hint works: the same prepare detects the damage and rebuilds
    assert r.rc == 0 and "rebuilding" in r.err
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] == fp
    assert run_main(["verify", out], capsys).rc == 0


def test_missing_shard_file(tmp_path, data, capsys):
    (data / "shard_00000.mask.npy").unlink()
    assert_clean_error(run_main(_train_argv(tmp_path, data), capsys), "shard_00000.mask.npy is missing")


def test_manifest_not_json(tmp_path, data, capsys):
    (data / "manifest.json").write_text('{"fingerprint": ')
    assert_clean_error(run_main(_train_argv(tmp_path, data), capsys), "manifest.json is not valid JSON")


def test_manifest_of_another_format_version(tmp_path, data, capsys):
    from fitrain.data.manifest import checksum

    m = json.loads((data / "manifest.json").read_text())
    m["format_version"] = 99
    m["checksum"] = checksum(m)
    (data / "manifest.json").write_text(json.dumps(m))
    assert_clean_error(run_main(_train_argv(tmp_path, data), capsys), "format_version 99", "re-run prepare")


def test_another_tokenizer_of_the_same_size_and_pad_id(tmp_path, data, tokenizer_dir, corpus_texts, capsys):
    from fitrain.data.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer_from_texts

    texts = [t.upper() for t in corpus_texts[:300]]  # the same recipe on other text
    other = train_tokenizer_from_texts(texts, TokenizerConfig(out=str(tmp_path / "other"), vocab_size=1000))
    a, b = load_tokenizer(tokenizer_dir), load_tokenizer(other)
    assert (len(a), a.pad_token_id) == (len(b), b.pad_token_id)  # only the identity tells them apart
    r = run_main(_train_argv(tmp_path, data, f"tokenizer={other}"), capsys)
    assert_clean_error(r, f"the tokenizer {other} is not the one data.path was prepared with")
    assert not (tmp_path / "run").exists()


def test_verify_a_directory_without_prepared_data(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert_clean_error(run_main(["verify", tmp_path / "empty"], capsys), "no prepared data here or below")


# --------------------------------------------------------------------------------------- checkpoints
def test_resume_from_a_missing_checkpoint(tmp_path, pairs_shards, capsys):
    r = run_main(_train_argv(tmp_path, pairs_shards, f"resume={tmp_path / 'nope.ckpt'}"), capsys)
    assert_clean_error(r, "checkpoint not found", "nope.ckpt")
    assert _no_summary(tmp_path / "run")


def test_corrupt_latest_checkpoint(tmp_path, trained, pairs_shards, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "summary.json").unlink()
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    latest.write_bytes(latest.read_bytes()[:1000])  # cut short, as a full disk would have left it
    r = run_main(_train_argv(tmp_path, pairs_shards, "max_steps=4"), capsys)
    assert_clean_error(r, "cannot read checkpoint", latest.name)
    assert _no_summary(run)


def test_latest_names_a_missing_checkpoint(tmp_path, trained, pairs_shards, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "summary.json").unlink()
    (run / "checkpoints" / "latest").write_text("step-00000099.ckpt\n")
    assert_clean_error(run_main(_train_argv(tmp_path, pairs_shards, "max_steps=4"), capsys),
                       "step-00000099.ckpt, which does not exist")


def test_checkpoint_of_another_model_shape(tmp_path, trained, pairs_shards, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "summary.json").unlink()
    r = run_main(_train_argv(tmp_path, pairs_shards, "max_steps=4", "model.dim=128"), capsys)
    assert_clean_error(r, "does not match the model being trained", "hidden_size")
    assert _no_summary(run)


def test_checkpoint_of_other_data(tmp_path, trained, documents_shards, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "summary.json").unlink()
    r = run_main(_train_argv(tmp_path, documents_shards, "max_steps=4"), capsys)
    assert_clean_error(r, "was trained on data with fingerprint", "use a new run_dir")


def test_export_without_a_checkpoint(tmp_path, capsys):
    (tmp_path / "ckpts").mkdir()
    r = run_main(["export", tmp_path / "ckpts", tmp_path / "hf"], capsys)
    assert_clean_error(r, "holds no checkpoint")
    assert not (tmp_path / "hf").exists()


def test_export_of_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "x.ckpt").write_bytes(b"not a checkpoint at all")
    assert_clean_error(run_main(["export", tmp_path / "x.ckpt", tmp_path / "hf"], capsys), "cannot read checkpoint")
    assert not (tmp_path / "hf").exists()


# --------------------------------------------------------------------------------------- disk, permissions
def _prepare_argv(tmp: Path, tok: Path, dolly: Path, out: Path) -> list[str]:
    return ["prepare", f"input.paths=[{dolly}]", f"tokenizer={tok}", "pack.seq_len=64", "progress=false", f"out={out}"]


def test_prepare_out_is_a_file(tmp_path, tokenizer_dir, dolly_pairs_file, capsys):  # a real EEXIST
    (tmp_path / "out").write_text("I am a file\n")
    r = run_main(_prepare_argv(tmp_path, tokenizer_dir, dolly_pairs_file, tmp_path / "out"), capsys)
    assert_clean_error(r, "(EEXIST)", str(tmp_path / "out"), "remove it or choose another path")
    assert (tmp_path / "out").read_text() == "I am a file\n"


def test_prepare_out_below_a_file(tmp_path, tokenizer_dir, dolly_pairs_file, capsys):  # a real ENOTDIR
    (tmp_path / "f").write_text("")
    r = run_main(_prepare_argv(tmp_path, tokenizer_dir, dolly_pairs_file, tmp_path / "f" / "out"), capsys)
    assert_clean_error(r, "(ENOTDIR)", "a file stands where a directory is expected")


def _fsync_fails(monkeypatch, code: int = errno.ENOSPC) -> None:
    def fsync(fd):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, "fsync", fsync)


def test_prepare_on_a_full_disk(tmp_path, tokenizer_dir, dolly_pairs_file, capsys, monkeypatch):  # fsync: ENOSPC
    _fsync_fails(monkeypatch)
    out = tmp_path / "out"
    r = run_main(_prepare_argv(tmp_path, tokenizer_dir, dolly_pairs_file, out), capsys)
    assert_clean_error(r, "No space left on device (ENOSPC) at", str(out / "shard_00000"), "the file system is full")
    assert not (out / "manifest.json").exists() and not list(out.glob("*.tmp")) and not list(out.glob("shard_*"))


def test_prepare_quota_exceeded(tmp_path, tokenizer_dir, dolly_pairs_file, capsys, monkeypatch):  # fsync: EDQUOT
    _fsync_fails(monkeypatch, errno.EDQUOT)
    r = run_main(_prepare_argv(tmp_path, tokenizer_dir, dolly_pairs_file, tmp_path / "out"), capsys)
    assert_clean_error(r, "(EDQUOT)", "quota")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_tokenizer_on_a_full_disk(tmp_path, capsys, monkeypatch):  # fsync: ENOSPC
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of some training text for the tokenizer" for i in range(300)))
    _fsync_fails(monkeypatch)
    r = run_main(["tokenizer", "train", f"files=[{corpus}]", "vocab_size=300", f"out={tmp_path / 'tok'}"], capsys)
    assert_clean_error(r, "(ENOSPC) at", str(tmp_path / "tok"))
    assert not (tmp_path / "tok").exists() and not list(tmp_path.glob(".tok.*"))


def test_train_on_a_full_disk(tmp_path, pairs_shards, capsys, monkeypatch):  # fsync: ENOSPC at the checkpoint
    _fsync_fails(monkeypatch)
    run = tmp_path / "run"
    assert_clean_error(run_main(_train_argv(tmp_path, pairs_shards, run=run), capsys), "(ENOSPC) at",
                       str(run / "checkpoints"))
    assert _no_summary(run) and not (run / "checkpoints" / "latest").exists()


def test_train_checkpoints_dir_is_a_file(tmp_path, pairs_shards, capsys):  # a real EEXIST
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("")
    r = run_main(_train_argv(tmp_path, pairs_shards, run=run), capsys)
    assert_clean_error(r, "(EEXIST)", str(run / "checkpoints"))
    assert _no_summary(run)


def test_export_below_a_file(tmp_path, trained, capsys):  # a real ENOTDIR
    (tmp_path / "f").write_text("")
    r = run_main(["export", trained / "checkpoints", tmp_path / "f" / "hf"], capsys)
    assert_clean_error(r, "(ENOTDIR)")


def test_prepare_into_a_read_only_place(tmp_path, tokenizer_dir, dolly_pairs_file, capsys, monkeypatch):  # EROFS
    ro = tmp_path / "ro"
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(real):
        def call(path, *a, **kw):
            if str(path).startswith(str(ro)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, *a, **kw)
        return call
    monkeypatch.setattr(os, "open", refuse(real_open))
    monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    r = run_main(_prepare_argv(tmp_path, tokenizer_dir, dolly_pairs_file, ro / "out"), capsys)
    assert_clean_error(r, "Read-only file system (EROFS)", str(ro), "choose a writable location")
    assert not ro.exists()


def test_export_on_a_full_disk(tmp_path, trained, capsys, monkeypatch):  # fsync: ENOSPC
    _fsync_fails(monkeypatch)
    r = run_main(["export", trained / "checkpoints", tmp_path / "hf"], capsys)
    assert_clean_error(r, "(ENOSPC) at", str(tmp_path / "hf"))
    assert not (tmp_path / "hf" / "_SUCCESS").exists()  # eval trusts an export only with its marker


def test_experiment_on_a_full_disk(tmp_path, capsys, monkeypatch):  # fsync: ENOSPC at the first write
    _fsync_fails(monkeypatch)
    root = tmp_path / "exp"
    r = run_main(["experiment", "tiny-cpu", f"run_dir={root}"], capsys)
    assert_clean_error(r, "(ENOSPC) at", str(root / "experiment.yaml"))
    assert not (root / "experiment.yaml").exists() and not (root / "steps").exists()
