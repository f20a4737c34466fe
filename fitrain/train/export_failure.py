"""A failed HF export at the end of training (a full disk) leaves the run's ``summary.json`` with its status,
``hf_dir: null`` and ``export: {status: failed, error}``, and no partial export that a later command would
load: the half-written files are removed first (which also frees the space the summary needs). The error
is raised on to the CLI (one line, exit 2)."""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

from fitrain.core.errors import FitrainError, describe_os_error
from fitrain.core.io import SUCCESS, write_json


@contextlib.contextmanager
def recording(out_dir: Path, summary_path: Path | None = None, summary: dict | None = None) -> Iterator[None]:
    """Clean up after a failed export of ``out_dir`` and record the failure in the summary, if given."""
    existed = out_dir.exists()
    try:
        yield
    except (OSError, FitrainError) as e:
        if not (out_dir / SUCCESS).is_file():  # a half-written export must not be loaded
            if existed:
                for p in out_dir.iterdir():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            else:
                shutil.rmtree(out_dir, ignore_errors=True)
        if summary_path is not None and summary is not None:
            why = describe_os_error(e) if isinstance(e, OSError) else str(e)
            summary.update(hf_dir=None, export={"status": "failed", "error": why})
            with contextlib.suppress(OSError):
                write_json(summary_path, summary)
        raise
