"""`fitrain verify DIR...`: check prepared data completely (checksums, counts, fingerprint, tokenizer)."""
from __future__ import annotations

import argparse

HELP = "check prepared data completely: manifest checksum, every shard's bytes and counts, the tokenizer"
DESCRIPTION = """\
Check every prepared directory named (or found below an experiment's run directory: prepared/<arm>):
the manifest's own checksum, each shard file's size and sha256, each shard's arrays against the counts and
hashes the manifest recorded, the fingerprint, the totals, and the tokenizer the data was prepared with.
Training checks only the cheap part of this when it opens the data. Prints one line per directory; exits 2
if any fails (re-run the same `fitrain prepare` to rebuild a damaged directory).

examples:
  fitrain verify runs/quick/prepared/fi
  fitrain verify runs/quick            # every prepared/<arm> of an experiment
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="a prepared directory, or a directory above prepared ones")


def run(args: argparse.Namespace) -> int:
    from fitrain.core.errors import FitrainError
    from fitrain.data.integrity import find_prepared, verify_prepared

    results = []
    for d in args.dirs:
        found = find_prepared(d)
        if not found:
            raise FitrainError(f"{d}: no prepared data here or below it (no manifest.json); "
                               "give a directory made by `fitrain prepare`")
        for directory in found:
            v = verify_prepared(directory)
            print(v.line(), flush=True)
            results.append(v)
    failed = [v for v in results if not v.ok]
    if failed:
        raise FitrainError(f"{len(failed)} of {len(results)} prepared director{'y' if len(results) == 1 else 'ies'} "
                           f"failed: {failed[0].directory}: {failed[0].problems[0]}")
    return 0
