"""Running ``fitrain`` the way a user does (in-process through ``fitrain.cli.main``, or as a subprocess of
``python -m fitrain.cli``) and checking that a failure is a clean one: exit status 2, exactly one
``error:`` line naming what is wrong, no traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.paths import REPO


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if "error:" in line]


def run_main(argv: list[str], capsys) -> Result:
    """``fitrain.cli.main(argv)`` in this process (argparse's own usage errors exit through SystemExit)."""
    import logging

    from fitrain.cli import main

    capsys.readouterr()
    # Lightning Fabric's log handler keeps the stderr of the test that imported it; point it at this test's
    for name in ("lightning", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stderr  # (setStream would flush the closed one)
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return Result(rc, captured.out, captured.err)


def run_cli(argv: list[str], env: dict | None = None, timeout: float = 300, **kw) -> Result:
    """``python -m fitrain.cli argv`` as a separate process."""
    full_env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO), **(env or {})}
    r = subprocess.run([sys.executable, "-m", "fitrain.cli", *map(str, argv)], capture_output=True, text=True,
                       timeout=timeout, env=full_env, **kw)
    return Result(r.returncode, r.stdout, r.stderr)


def assert_clean_error(r: Result, *names: str) -> str:
    """Exit status 2, one ``fitrain ...: error:`` line that contains every one of ``names``, no traceback;
    returns that line."""
    assert "Traceback" not in r.err, r.err[-3000:]
    assert r.rc == 2, (r.rc, r.err[-3000:])
    lines = r.error_lines
    assert len(lines) == 1, r.err[-3000:]
    line = lines[0]
    assert line.startswith("fitrain ") and ": error: " in line, line
    for n in names:
        assert str(n) in line, (n, line)
    return line


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def pair(doc: str, instruction: str = "What does the text say about lists?", answer: str = "Lists hold items.",
         **extra) -> dict:
    return {"warc_record_id": doc, "text": f"Document {doc}: lists hold items in order, and tuples do too.",
            "instantiated_instruction": instruction, "answer": answer, **extra}
