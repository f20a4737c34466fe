"""Rebuild the offline cloze tasks' data from the MixEval files (python eval/tasks/build_mixeval_mc.py [ROOT]; without
ROOT, the official files, fetched and verified by fitrain_eval.data_sources).

Keeps multiple-choice items without a context passage, with one correct option, a question of at most
300 characters and options of at most 120 characters; the first 200 by id of each split. Source: MixEval
2024-08-11 (github.com/Psycoy/MixEval; no licence stated there; the items come from MMLU, HellaSwag,
CommonsenseQA, ARC, PIQA, SIQA, ... under their own licences).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
N = 200


def build(root: Path) -> dict:
    counts = {}
    for split, name in (("mixeval", "mixeval_mc.jsonl"), ("mixeval-hard", "mixeval_hard_mc.jsonl")):
        data = json.loads((root / split / "multiple-choice.json").read_text(encoding="utf-8"))
        rows = []
        for key in sorted(data, key=int):
            it = data[key]
            if it.get("context") or len(it["target"]) != 1 or len(it["prompt"]) > 300:
                continue
            if any(len(o) > 120 for o in it["options"]):
                continue
            rows.append({"id": key, "benchmark": it["benchmark_name"], "question": it["prompt"].strip(),
                         "choices": [o.strip() for o in it["options"]], "label": it["target"][0]})
            if len(rows) == N:
                break
        (HERE / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        counts[name] = len(rows)
    return counts


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(build(Path(sys.argv[1])))
    else:
        from fitrain_eval.data_sources import OFFICIAL, mixeval_root

        print(build(Path(mixeval_root(OFFICIAL, ["mixeval", "mixeval_hard"]))))
