"""Slurm launch: render an sbatch script, submit it, follow it.

One job per step of an experiment. Training jobs run ``srun`` with one task per GPU
(``#SBATCH --ntasks-per-node=<gpus>``; ``--ntasks`` alone breaks Lightning's SLURMEnvironment), call python
directly with a job name (Lightning treats a job named ``bash`` as interactive), ask Slurm for a signal ahead
of the time limit (``--signal=USR1@<lead>``): the trainer checkpoints on SIGUSR1 and requeues the job
(``scontrol requeue``, Lightning's auto-requeue), the rerun resumes from the checkpoint, and
``--open-mode=append`` keeps the first run's log. data_gen shards map to a job array.

The ``srun`` line repeats ``--cpus-per-task``: from Slurm 22.05 ``srun`` no longer inherits it from the
batch allocation, so each rank (and its data-loader workers) would get one CPU. The script ``cd``s to the
directory it was submitted from (``$SLURM_SUBMIT_DIR``, or ``workdir``) before the ``setup`` lines, so a
relative ``source .venv/bin/activate`` and the relative run paths resolve there, also after a requeue.
``--kill-on-invalid-dep=yes``: when a job fails, Slurm cancels the jobs waiting on it with afterok (they
could never start), so a resubmission queues them again instead of leaving them pending forever.

Multi-node jobs rendezvous on the job's own first node: ``MASTER_ADDR`` is always set from
``$SLURM_JOB_NODELIST``, never inherited from the submitting shell (a stale value hangs the job on the wrong
host). ``--exclusive`` without ``mem`` asks for ``--mem=0`` (all of each node's memory), the portable request
where a fixed size like 960G exceeds what some nodes offer. The warning ahead of the time limit
(``signal_lead_s``) defaults to ``-1``, sized from what the job must write: ``signal_base_s`` plus the
checkpoint's bytes over ``checkpoint_write_mb_s`` (an assumed aggregate write bandwidth of the shared file
system, 200 MB/s by default; :func:`signal_lead`). A 1.8b checkpoint (fp32 weights + two AdamW moments,
~22 GB with the Llama-3 vocabulary) gets 60 + 109 s, a 7b one (~90 GB) 60 + 452 s.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from fitrain.core.errors import FitrainError

ARRAY_TASK_ID = "${SLURM_ARRAY_TASK_ID}"
_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$|^\d+$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_SIGNALS = ("USR1", "USR2", "TERM", "INT", "HUP")


@dataclass
class SlurmConfig:
    """Resources and set-up of one kind of job (see ``ExperimentSlurm`` for the per-step sets)."""

    nodes: int = 1
    gpus_per_node: int = 0          # > 0: one task per GPU; 0: a CPU job with ``tasks_per_node`` tasks
    tasks_per_node: int = 1         # used only when gpus_per_node == 0 (e.g. DDP over gloo on CPU)
    cpus_per_task: int = 1
    mem: str = ""                   # per node, e.g. "64G"; "" = the cluster's default
    time: str = ""                  # "HH:MM:SS" or "D-HH:MM:SS"; "" = the partition's default
    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    exclusive: bool = False
    setup: list[str] = field(default_factory=list)   # shell lines before srun: module load, source venv, ...
    env: dict[str, str] = field(default_factory=dict)
    python: str = ""                # the interpreter inside the job; '' = the one running fitrain now
    signal: str = "USR1"            # preemption signal, delivered to the job steps
    signal_lead_s: int = -1         # seconds ahead of the time limit; -1 = sized from the checkpoint (signal_lead)
    signal_base_s: int = 60         # the sized lead: this many seconds ...
    checkpoint_write_mb_s: float = 200.0   # ... plus the checkpoint's bytes at this write bandwidth (MB/s)
    requeue: bool = True
    array_parallelism: int = 0      # job arrays: at most this many tasks at once (0 = no limit)
    extra_sbatch: list[str] = field(default_factory=list)  # verbatim '--key=value' lines

    @property
    def ntasks_per_node(self) -> int:
        return self.gpus_per_node if self.gpus_per_node > 0 else self.tasks_per_node

    @property
    def world_size(self) -> int:
        return self.nodes * self.ntasks_per_node

    def validate(self) -> None:
        for name in ("nodes", "tasks_per_node", "cpus_per_task"):
            if getattr(self, name) < 1:
                raise FitrainError(f"slurm.{name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0 or self.signal_base_s < 0 or self.array_parallelism < 0:
            raise FitrainError("slurm.gpus_per_node, signal_base_s and array_parallelism must be >= 0")
        if self.signal_lead_s < -1:
            raise FitrainError(f"slurm.signal_lead_s must be -1 (sized from the checkpoint), 0 (no signal) or "
                               f"seconds, got {self.signal_lead_s}")
        if self.checkpoint_write_mb_s <= 0:
            raise FitrainError(f"slurm.checkpoint_write_mb_s must be > 0, got {self.checkpoint_write_mb_s}")
        if self.time and not _TIME.match(self.time):
            raise FitrainError(f"slurm.time '{self.time}' is not a Slurm time (MM, HH:MM:SS or D-HH:MM:SS)")
        if self.mem and not _MEM.match(self.mem):
            raise FitrainError(f"slurm.mem '{self.mem}' is not a Slurm size like 64G")
        if self.signal not in _SIGNALS:
            raise FitrainError(f"slurm.signal '{self.signal}' must be one of {list(_SIGNALS)}")
        for line in self.extra_sbatch:
            if not line.startswith("--"):
                raise FitrainError(f"slurm.extra_sbatch lines look like '--key=value', got '{line}'")


def signal_lead(cfg: SlurmConfig, checkpoint_bytes: int = 0) -> int:
    """Seconds between the warning signal and the time limit: ``signal_lead_s`` when set (0: no signal),
    else ``signal_base_s + checkpoint_bytes / checkpoint_write_mb_s`` rounded up."""
    if cfg.signal_lead_s >= 0:
        return cfg.signal_lead_s
    return cfg.signal_base_s + -(-int(checkpoint_bytes) // int(cfg.checkpoint_write_mb_s * 1e6))


def quote(arg: str) -> str:
    """Shell-quote an argument, but let ``${SLURM_...}`` variables (array task id) expand."""
    if "${SLURM_" in arg:
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'
    return shlex.quote(arg)


def render_sbatch(cfg: SlurmConfig, job_name: str, command: Sequence[str], log_dir: str | Path, *,
                  workdir: str | Path | None = None, array: int = 0, distributed: bool = True,
                  checkpoint_bytes: int = 0) -> str:
    """The sbatch script that runs ``command`` (argv; ``ARRAY_TASK_ID`` expands in array jobs).

    ``distributed``: launch ``srun`` with one task per GPU (or ``tasks_per_node`` on CPU) on every node;
    otherwise the job is one task. ``array``: > 0 makes a job array of that many tasks.
    ``checkpoint_bytes``: what a checkpoint of the job writes, for the warning's lead (:func:`signal_lead`).
    """
    cfg.validate()
    if not re.match(r"^[A-Za-z0-9_.+-]+$", job_name):
        raise FitrainError(f"job name '{job_name}' may only hold letters, digits and _.+-")
    if array < 0:
        raise FitrainError(f"array size must be >= 0, got {array}")
    nodes = cfg.nodes if distributed else 1
    tasks = cfg.ntasks_per_node if distributed else 1
    log = Path(log_dir).resolve() / ("%x-%A_%a.out" if array else "%x-%j.out")
    o = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --nodes={nodes}",
         f"#SBATCH --ntasks-per-node={tasks}", f"#SBATCH --cpus-per-task={cfg.cpus_per_task}"]
    if cfg.gpus_per_node > 0:
        o.append(f"#SBATCH --gpus-per-node={cfg.gpus_per_node if distributed else 1}")
    for key, val in (("mem", cfg.mem), ("time", cfg.time), ("partition", cfg.partition),
                     ("account", cfg.account), ("qos", cfg.qos), ("constraint", cfg.constraint)):
        if val:
            o.append(f"#SBATCH --{key}={val}")
    if cfg.exclusive:
        o.append("#SBATCH --exclusive")
        if not cfg.mem:
            o.append("#SBATCH --mem=0")      # all of each node's memory, whatever the node offers
    if array:
        o.append(f"#SBATCH --array=0-{array - 1}" + (f"%{cfg.array_parallelism}" if cfg.array_parallelism else ""))
    lead = signal_lead(cfg, checkpoint_bytes)
    if lead:
        o.append(f"#SBATCH --signal={cfg.signal}@{lead}")
    o.append("#SBATCH --requeue" if cfg.requeue else "#SBATCH --no-requeue")
    # a job whose afterok dependency failed can never start: Slurm cancels it instead of leaving it pending
    o += ["#SBATCH --kill-on-invalid-dep=yes", "#SBATCH --open-mode=append", f"#SBATCH --output={log}"]
    if workdir is not None:
        o.append(f"#SBATCH --chdir={Path(workdir).resolve()}")
    o += [f"#SBATCH {line}" for line in cfg.extra_sbatch]
    o += ["", "set -eo pipefail   # (no -u: module and venv set-up scripts may read unset variables)",
          'echo "[fitrain] job ${SLURM_JOB_ID} on ${SLURM_JOB_NODELIST} restart ${SLURM_RESTART_COUNT:-0}'
          + (' array task ${SLURM_ARRAY_TASK_ID}' if array else '') + ' at $(date -u +%FT%TZ)"']
    # relative paths in `setup` (a venv) and in the command resolve from the submit directory
    o.append(f"cd {shlex.quote(str(Path(workdir).resolve()))}" if workdir is not None else 'cd "${SLURM_SUBMIT_DIR}"')
    o += list(cfg.setup)
    env = {"OMP_NUM_THREADS": str(cfg.cpus_per_task), "PYTHONUNBUFFERED": "1", **cfg.env}
    o += [f"export {k}={quote(str(v))}" for k, v in env.items()]
    if distributed and nodes * tasks > 1:
        # the job's own first node, never a value inherited from the submitting shell; Lightning picks
        # MASTER_PORT from the job id
        o.append('export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"')
    # Slurm >= 22.05: srun does not inherit --cpus-per-task from sbatch (one CPU per rank otherwise)
    srun = ["srun", f"--job-name={job_name}", f"--nodes={nodes}", f"--ntasks-per-node={tasks}",
            f"--cpus-per-task={cfg.cpus_per_task}", "--kill-on-bad-exit=1"]
    o.append(" ".join(srun + [quote(cfg.python or sys.executable)] + [quote(a) for a in command]))
    return "\n".join(o) + "\n"


# ------------------------------------------------------------------------------------------ the cluster
def check_reachable(timeout: float = 20.0) -> None:
    """Raise a FitrainError that says what to do when no Slurm controller answers."""
    missing = [c for c in ("sbatch", "sinfo", "scontrol") if shutil.which(c) is None]
    if missing:
        raise FitrainError(f"Slurm is not reachable: {', '.join(missing)} not found on PATH. Run on a Slurm login "
                           "node, or run the experiment locally (without --slurm / slurm submit).")
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FitrainError(f"Slurm is not reachable: sinfo did not answer within {timeout:.0f} s") from None
    if r.returncode != 0:
        raise FitrainError(f"Slurm is not reachable: sinfo failed ({(r.stderr or r.stdout).strip()[:300]})")


def submit(script: str | Path, dependency: Sequence[str] = (), kind: str = "afterok") -> str:
    """``sbatch --parsable`` the script (after ``dependency`` jobs succeed); returns the job id."""
    check_reachable()
    cmd = ["sbatch", "--parsable"]
    deps = [d for d in dependency if d]
    if deps:
        cmd.append(f"--dependency={kind}:" + ":".join(deps))
    cmd.append(str(script))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise FitrainError(f"sbatch {script} failed: {' '.join((r.stderr or r.stdout).split())[:500]}")
    return parse_job_id(r.stdout)


def parse_job_id(out: str) -> str:
    """The job id from ``sbatch --parsable`` (``123`` or ``123;cluster``) or ``Submitted batch job 123``."""
    m = re.search(r"(?:^|Submitted batch job )(\d+)(?:;\S+)?\s*$", out.strip(), re.MULTILINE)
    if not m:
        raise FitrainError(f"could not read a job id from sbatch's output: {out.strip()[:200]!r}")
    return m.group(1)


def job_states(job_id: str) -> dict[str, str]:
    """``{job id (array tasks as 12_3): state}`` from ``scontrol show job`` (sacct needs slurmdbd)."""
    return {jid: f["JobState"] for jid, f in job_info(job_id).items()}


def job_info(job_id: str) -> dict[str, dict[str, str]]:
    """``{job id (array tasks as 12_3): scontrol's fields (JobState, Reason, ...)}``."""
    r = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise FitrainError(f"scontrol show job {job_id}: {(r.stderr or r.stdout).strip()[:300]}")
    out = {}
    for line in r.stdout.splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "JobState" not in f:
            continue
        jid = f.get("JobId", "")
        if f.get("ArrayTaskId") and f.get("ArrayJobId"):
            jid = f"{f['ArrayJobId']}_{f['ArrayTaskId']}"
        out[jid] = f
    return out


def job_field(job_id: str, name: str) -> str:
    r = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True, timeout=30)
    m = re.search(rf"(?:^|\s){re.escape(name)}=(\S*)", r.stdout)
    return m.group(1) if m else ""


FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE"}


def wait(job_id: str, timeout: float = 600.0, poll: float = 0.3) -> dict[str, str]:
    """Poll until every task of the job is in a final state; returns the states. A pending array that
    has not expanded yet counts as not final."""
    deadline = time.monotonic() + timeout
    while True:
        states = job_states(job_id)
        if states and all(s.split()[0] in FINAL for s in states.values()) and not any(
                "[" in j for j in states):
            return states
        if time.monotonic() > deadline:
            raise FitrainError(f"job {job_id} did not finish within {timeout:.0f} s: {states}")
        time.sleep(poll)
