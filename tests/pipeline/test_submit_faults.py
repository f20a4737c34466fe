"""Slurm submission faults through the CLI: each job id is recorded the moment it is submitted, so a failure on
the third sbatch leaves the first two recorded and the rerun never submits a step still pending; an
unreadable jobs.json and an unreachable Slurm are one clean line each.

The failing sbatch is the real one behind a wrapper on PATH that refuses its third call and otherwise runs
the real sbatch with ``--hold`` added (the jobs stay pending, so nothing runs on the cluster; they are
cancelled at the end)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import assert_clean_error, run_main

WRAPPER = """#!/bin/bash
n=$(( $(cat "{count}" 2>/dev/null || echo 0) + 1 )); echo $n > "{count}"
if [ "$n" = "{fail_at}" ] && [ ! -e "{disarmed}" ]; then
  echo "sbatch: error: Batch job submission failed: fault injected by the test" >&2; exit 1
fi
exec {sbatch} --hold "$@"
"""


def _wrapped_sbatch(tmp: Path, fail_at: int) -> Path:
    real = shutil.which("sbatch")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    w = bin_dir / "sbatch"
    w.write_text(WRAPPER.format(count=tmp / "calls", fail_at=fail_at, disarmed=tmp / "disarmed", sbatch=real))
    w.chmod(0o755)
    return bin_dir


@pytest.mark.slurm
def test_third_submission_fails_then_the_rerun_submits_only_the_rest(slurm_cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", f"{_wrapped_sbatch(tmp_path, 3)}{os.pathsep}{os.environ['PATH']}")
    run = tmp_path / "exp"
    argv = ["experiment", "tiny-cpu", "--slurm", f"run_dir={run}", "name=faults"]
    jobs_json = run / "slurm" / "jobs.json"
    try:
        r = run_main(argv, capsys)
        assert_clean_error(r, "data_gen-templates.sbatch failed", "fault injected by the test")
        first = json.loads(jobs_json.read_text())
        assert list(first) == ["corpus", "tokenizer"]
        (tmp_path / "disarmed").touch()
        r = run_main(argv, capsys)
        assert r.rc == 0, r.err
        for step in ("corpus", "tokenizer"):
            assert f"{step}: still queued or running as job {first[step]}, not submitted again" in r.out
        jobs = json.loads(jobs_json.read_text())
        assert {k: jobs[k] for k in first} == first and "data_gen-templates" in jobs and "report" in jobs
        assert int((tmp_path / "calls").read_text()) == 3 + len(jobs) - 2  # nothing submitted twice
    finally:
        ids = json.loads(jobs_json.read_text()).values() if jobs_json.is_file() else []
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


@pytest.mark.slurm
def test_unreadable_jobs_record_is_refused(slurm_cluster, tmp_path, capsys):
    run = tmp_path / "exp"
    (run / "slurm").mkdir(parents=True)
    (run / "slurm" / "jobs.json").write_text('{"corpus": "12')
    r = run_main(["experiment", "tiny-cpu", f"run_dir={run}", "name=faults", "--slurm"], capsys)
    assert_clean_error(r, "jobs.json cannot be read", "duplicates", "squeue")


def test_slurm_not_reachable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    r = run_main(["slurm", "submit", "tiny-cpu", f"run_dir={tmp_path / 'exp'}"], capsys)
    assert_clean_error(r, "Slurm is not reachable", "sbatch")
    assert not (tmp_path / "exp" / "slurm").exists()
