"""Whether ``fitrain prepare`` may reuse, must rebuild, or must refuse to touch what its output directory
holds (fitrain.core.overwrite: a finished directory of another configuration is replaced only with
``--overwrite``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from fitrain.core.errors import FitrainError
from fitrain.core.io import read_json
from fitrain.data.manifest import MANIFEST, Manifest
from fitrain.data.shards import open_prepared


def finished_manifest(out: Path, settings: str, config: dict, overwrite: bool = False) -> Manifest | None:
    """The manifest of a finished, undamaged directory with these settings; a damaged directory's manifest,
    or one of the same configuration whose input files changed, is removed first (and the directory rebuilt,
    saying so). A finished directory of another configuration is refused unless ``overwrite``."""
    if not (out / MANIFEST).is_file():
        return None
    try:
        old = read_json(out / MANIFEST)
    except ValueError:
        old = {}
    if isinstance(old, dict) and old.get("settings") not in (None, settings) and not overwrite:
        from fitrain.core.overwrite import refuse_other_config

        recorded = old.get("config")
        if not isinstance(recorded, dict) or not recorded:
            raise FitrainError(f"{out} holds a finished prepare of other settings (written by an older fitrain, "
                               "which did not record them); pass --overwrite to replace it, or write to a new "
                               "directory")
        refuse_other_config("prepare", out, recorded, json.loads(json.dumps(config, default=str)))
        print(f"prepare: rebuilding {out}: its input files changed since it was prepared", file=sys.stderr)
    if isinstance(old, dict) and old.get("settings") == settings:
        try:
            data = open_prepared(out)
            data.validate()
            return data.manifest
        except FitrainError as e:
            print(f"prepare: rebuilding {out}, which is damaged: {e}", file=sys.stderr)
    (out / MANIFEST).unlink()  # stale: no reader may pair it with the shards about to be written
    return None

