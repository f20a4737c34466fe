"""Slurm submission faults through the CLI: each job id is recorded the moment it is submitted, so a failure on
the third sbatch leaves the first two recorded and the rerun never submits a step still pending; a job that
fails gets its dependents cancelled, and the rerun after the fix submits both again and they complete; a
job pending on a failed dependency counts as dead; ``--step X`` waits for X's dependencies still queued from
an earlier submission; an unreadable jobs.json and an unreachable Slurm are one clean line each.

The failing sbatch is the real one behind a wrapper on PATH that refuses its third call and otherwise runs
the real sbatch with ``--hold`` added (the jobs stay pending, so nothing runs on the cluster; they are
cancelled at the end)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fitrain.pipeline.slurm import job_field, job_states, wait
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
        _cancel_recorded(jobs_json)


def _cancel_recorded(jobs_json: Path) -> None:
    ids = list(json.loads(jobs_json.read_text()).values()) if jobs_json.is_file() else []
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


SMALL = ["corpus.max_documents=12", "corpus.max_chars=1200", f"slurm.steps.python={sys.executable}"]


@pytest.mark.slurm
def test_a_failed_step_cancels_its_dependents_and_the_rerun_after_the_fix_completes_both(
        slurm_cluster, tmp_path, capsys):
    fixed = tmp_path / "fixed"  # the job's set-up fails until this file exists: a real failing job, cheaply
    run = tmp_path / "exp"
    argv = ["experiment", "tiny-cpu", "--slurm", f"run_dir={run}", "name=depfail", *SMALL,
            f"slurm.steps.setup=['test -e {fixed}']", "--step", "corpus", "--step", "tokenizer"]
    jobs_json = run / "slurm" / "jobs.json"
    try:
        r = run_main(argv, capsys)
        assert r.rc == 0, r.err
        first = json.loads(jobs_json.read_text())
        assert set(wait(first["corpus"], timeout=120).values()) == {"FAILED"}
        # --kill-on-invalid-dep=yes: Slurm cancels the tokenizer job instead of leaving it pending forever
        assert set(wait(first["tokenizer"], timeout=120).values()) == {"CANCELLED"}
        fixed.touch()
        r = run_main(argv, capsys)
        assert r.rc == 0, r.err
        again = json.loads(jobs_json.read_text())
        for step in ("corpus", "tokenizer"):
            assert again[step] != first[step] and f"{step}: submitted job {again[step]}" in r.out
        states = wait(again["tokenizer"], timeout=180)
        logs = "\n".join(p.read_text() for p in sorted((run / "slurm" / "logs").glob("*.out")))
        assert set(states.values()) == {"COMPLETED"}, logs[-3000:]
        assert (run / "steps" / "corpus" / "_SUCCESS").is_file() and (run / "steps" / "tokenizer" / "_SUCCESS").is_file()
    finally:
        _cancel_recorded(jobs_json)


def _sbatch(*args: str) -> str:
    r = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=60, check=True)
    return r.stdout.strip().split(";")[0]


@pytest.mark.slurm
def test_a_job_pending_on_a_failed_dependency_is_dead_and_cancelled(slurm_cluster, tmp_path):
    from fitrain.pipeline.submit import _alive

    out = f"--output={tmp_path}/%j.out"
    failed = _sbatch(out, "--wrap", "false")
    # without --kill-on-invalid-dep (jobs submitted by an older fitrain, or by hand) Slurm keeps it pending
    dependent = _sbatch(out, "--kill-on-invalid-dep=no", f"--dependency=afterok:{failed}", "--wrap", "true")
    held = _sbatch(out, "--hold", "--wrap", "true")
    try:
        wait(failed, timeout=120)
        deadline = time.monotonic() + 60
        while job_field(dependent, "Reason") != "DependencyNeverSatisfied":
            assert time.monotonic() < deadline, job_field(dependent, "Reason")
            time.sleep(0.5)
        assert _alive(held)  # merely pending: alive
        assert not _alive(dependent)  # can never start: dead, and cancelled so that it is submitted again
        assert set(wait(dependent, timeout=60).values()) == {"CANCELLED"}
    finally:
        subprocess.run(["scancel", failed, dependent, held], capture_output=True, timeout=60)


@pytest.mark.slurm
def test_a_partial_submission_waits_for_dependencies_queued_earlier(slurm_cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", f"{_wrapped_sbatch(tmp_path, 0)}{os.pathsep}{os.environ['PATH']}")  # all held
    run = tmp_path / "exp"
    argv = ["experiment", "tiny-cpu", "--slurm", f"run_dir={run}", "name=partial", *SMALL]
    jobs_json = run / "slurm" / "jobs.json"
    try:
        r = run_main(argv + ["--step", "data_gen-templates"], capsys)  # needs corpus: neither done nor queued
        assert_clean_error(r, "step data_gen-templates needs step corpus, which is neither finished nor queued")
        assert run_main(argv + ["--step", "corpus"], capsys).rc == 0
        corpus = json.loads(jobs_json.read_text())["corpus"]
        r = run_main(argv + ["--step", "tokenizer"], capsys)
        assert r.rc == 0, r.err
        tokenizer = json.loads(jobs_json.read_text())["tokenizer"]
        assert f"tokenizer: submitted job {tokenizer} (afterok:{corpus})" in r.out
        assert f"afterok:{corpus}" in job_field(tokenizer, "Dependency")
        assert set(job_states(tokenizer).values()) == {"PENDING"}
    finally:
        _cancel_recorded(jobs_json)


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
