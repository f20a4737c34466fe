"""`fitrain verify PATH...`: check prepared data completely (checksums, counts, fingerprint, tokenizer) and
training checkpoints (layout, checksum)."""
from __future__ import annotations

import argparse

HELP = "check prepared data (checksums, counts, tokenizer) and training checkpoints (layout, checksum)"
DESCRIPTION = """\
Check every prepared directory named (or found below an experiment's run directory: prepared/<arm>):
the manifest's own checksum, each shard file's size and sha256, each shard's arrays against the counts and
hashes the manifest recorded, the fingerprint, the totals, and the tokenizer the data was prepared with.
Training checks only the cheap part of this when it opens the data. A training checkpoint (a
step-*.ckpt file or directory), a run directory or an experiment has its checkpoints checked too: the
layout and the checksum recorded at save. Prints one line per directory or checkpoint; exits 2 if any
fails (re-run the same `fitrain prepare` to rebuild a damaged directory; resume from an earlier checkpoint).

examples:
  fitrain verify runs/quick/prepared/fi
  fitrain verify runs/quick            # every prepared/<arm> and checkpoint of an experiment
  fitrain verify runs/quick/train/fi   # every checkpoint of a run
  fitrain verify runs/quick/train/fi/checkpoints/step-00000100.ckpt
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="PATH",
                   help="a prepared directory, a checkpoint, a run directory, or a directory above them")


def run(args: argparse.Namespace) -> int:
    from fitrain.core.errors import FitrainError
    from fitrain.data.integrity import find_prepared, verify_prepared
    from fitrain.train.checkpoint import find_checkpoints, verify_checkpoint

    failed: list[str] = []
    total = 0
    for d in args.dirs:
        prepared, checkpoints = find_prepared(d), find_checkpoints(d)
        if not prepared and not checkpoints:
            raise FitrainError(f"{d}: no prepared data here or below it (no manifest.json) and no training checkpoint "
                               "(step-*.ckpt); give a directory made by `fitrain prepare` or `fitrain train`")
        for directory in prepared:
            v = verify_prepared(directory)
            print(v.line(), flush=True)
            failed += [] if v.ok else [f"{v.directory}: {v.problems[0]}"]
        for ckpt in checkpoints:
            ok, line = verify_checkpoint(ckpt)
            print(line, flush=True)
            failed += [] if ok else [line.removeprefix("FAILED ")]
        total += len(prepared) + len(checkpoints)
    if failed:
        raise FitrainError(f"{len(failed)} of {total} checked failed: {failed[0]}")
    return 0
