"""Shared by every other package; imports nothing heavy (no torch, no lightning) at module load.

* ``errors``     -- FitrainError / ConfigError: the messages users see instead of tracebacks; one-line
  descriptions of operating-system errors (full disk, read-only, permissions).
* ``config``     -- dataclass schemas, YAML recipes merged over them, ``key=value`` overrides, nearest-key
  hints; errors of nested value checks carry the full dotted key.
* ``checks``     -- the value checks a config dataclass runs on construction (``__post_init__``).
* ``recipes``    -- named recipes (``train/fi-300m``) -> files of the shipped recipes/ folder.
* ``io``         -- atomic writes (files and directories), JSON, ``_SUCCESS`` markers, file checksums.
* ``lock``       -- one writer per output directory (flock with stale-lock take-over after a kill).
* ``accounting`` -- TokenCounts (total vs supervised tokens) and Rejects (counted by reason).
* ``layout``     -- every path under a run directory (RunLayout, TrainDir).
* ``rng``        -- per-item generators that do not depend on sharding.
* ``llm``        -- the one client layer for language models (OpenAI-compatible servers, transformers,
  the offline extractive fallback), used by data_gen's stages and eval's judges.
"""
