"""A full disk during the HF export (safetensors' own error type): one line naming the directory (exit 2),
no half-written export left for a later command to load, and a training run's summary.json still written
with its status and the export's failure (fitrain.train.export_failure)."""
from __future__ import annotations

import json

import pytest

from fitrain.core.io import as_os_error
from tests.commands.test_bad_state import _train_argv, trained  # noqa: F401  (a fixture)
from tests.commands.test_disk_real import mounted
from tests.helpers.cli import assert_clean_error, run_main

STORAGE_FULL = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'


def _safetensors_full(monkeypatch):
    import safetensors
    import transformers.modeling_utils as mu

    def full(*a, **k):
        raise safetensors.SafetensorError(STORAGE_FULL)

    monkeypatch.setattr(mu, "safe_save_file", full)


def test_safetensors_full_disk_reads_as_enospc(tmp_path):
    import errno

    import safetensors

    e = as_os_error(safetensors.SafetensorError(STORAGE_FULL), tmp_path)
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC and e.filename == str(tmp_path)
    assert isinstance(as_os_error(RuntimeError("other"), tmp_path), RuntimeError)
    assert as_os_error(OSError(errno.EIO, "io"), tmp_path).filename == str(tmp_path)


def test_train_whose_export_hits_a_full_disk_leaves_a_summary_with_its_status(tmp_path, pairs_shards, capsys,
                                                                              monkeypatch):
    _safetensors_full(monkeypatch)
    run = tmp_path / "run"
    r = run_main(_train_argv(tmp_path, pairs_shards, "export_hf=true"), capsys)
    assert_clean_error(r, "No space left on device (ENOSPC) at", str(run / "hf"), "the file system is full")
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "finished" and s["hf_dir"] is None and s["export"]["status"] == "failed"
    assert "ENOSPC" in s["export"]["error"]
    assert not (run / "hf").exists()  # nothing half-written to load


def test_export_onto_a_really_full_disk(tmp_path, trained, capsys):  # noqa: F811
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=256k", "tmpfs") as small:
        out = small / "hf"
        r = run_main(["export", trained / "checkpoints", out], capsys)
        assert_clean_error(r, "No space left on device (ENOSPC) at", str(out))
        assert not out.exists()


def test_a_failed_reexport_does_not_leave_the_earlier_marker(tmp_path, trained, capsys, monkeypatch):  # noqa: F811
    out = tmp_path / "hf"
    assert run_main(["export", trained / "checkpoints", out], capsys).rc == 0 and (out / "_SUCCESS").is_file()
    _safetensors_full(monkeypatch)
    assert_clean_error(run_main(["export", trained / "checkpoints", out], capsys), "(ENOSPC)")
    assert not (out / "_SUCCESS").exists() and not list(out.glob("*.safetensors"))
