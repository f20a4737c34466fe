"""Fixtures of the experiment tests: a reachable Slurm cluster (or a clear skip)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers.paths import REPO
SLURM_UP = REPO.parent / "shared" / "tools" / "slurm_up.sh"  # CI only: the workplace's local-cluster script


def _sinfo_ok() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A reachable Slurm. Brings the local test cluster up with SLURM_UP (CI's script) only when
    sinfo already answers or FITRAIN_SLURM_UP=1 is set; otherwise the test skips with the reason."""
    if _sinfo_ok():
        return
    if os.environ.get("FITRAIN_SLURM_UP") == "1":
        if not SLURM_UP.is_file():
            pytest.skip(f"FITRAIN_SLURM_UP=1 but {SLURM_UP} does not exist")
        r = subprocess.run(["bash", str(SLURM_UP)], capture_output=True, text=True, timeout=300)
        if r.returncode != 0 or not _sinfo_ok():
            pytest.fail(f"slurm_up.sh failed (rc {r.returncode}): {r.stderr[-2000:]}")
        return
    pytest.skip(f"no Slurm reachable (sinfo missing or failing); run {SLURM_UP} as root "
                "or set FITRAIN_SLURM_UP=1 to let the tests start the local cluster")
