"""The shipped tasks' data loader: ``custom_dataset: !function local_data.load`` in a task YAML reads the JSON-lines
file named by ``dataset_kwargs.data_file`` from THIS folder, so ``lm_eval --include_path <fitrain>/eval/tasks``
works from any working directory (lm-eval resolves a plain ``data_files`` entry against the current directory).
lm-eval calls it with the task's metadata and dataset_kwargs (and, through the metadata, the model's
arguments), hence ``**_``."""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(data_file: str, split: str = "test", **_):
    import datasets

    path = HERE / data_file
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})
