"""Quality of the offline extractive fallback, measured against pairs labelled by hand.

Two corpora: the quickstart's (the built-in Python documentation corpus with the shipped template bank,
recipes/quickstart.yaml) and the Dolly contexts as documents with the Dolly instructions as queries
(tests/fixtures/dolly, templatized by the fallback itself).

    .venv/bin/python benchmarks/fallback_quality.py --sample OUT.jsonl    # run both, draw pairs to label
    .venv/bin/python benchmarks/fallback_quality.py                       # figures on the committed labels

The labels (tests/data_gen/fixtures/fallback_labels.jsonl, one pair per line with its document, the
judge's score when it was drawn and ``label``: sensible | not) were given by reading every pair, by the
rule in that file's first line (file layout: tests/helpers/fallback_labels.py). Printed: the share of sensible pairs among the pairs the judge keeps
(score >= 4) now, per corpus and in all, and how often the judge's keep/drop agrees with the labels.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def judged_rows(run_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    docs = {}
    for p in sorted((run_dir / "data_gen" / "matches").glob("shard-*/documents.parquet")):
        docs.update({r["doc_id"]: r["text"] for r in pq.read_table(p).to_pylist()})
    rows = []
    for p in sorted((run_dir / "data_gen" / "judged").glob("shard-*/judged.parquet")):
        for r in pq.read_table(p).to_pylist():
            rows.append({"doc_id": r["doc_id"], "instruction": r["instruction"], "answer": r["answer"],
                         "judge_score": r["judge_score"], "document": docs[r["doc_id"]]})
    return rows


def run_quickstart(tmp: Path) -> Path:
    run = tmp / "quickstart"
    subprocess.run([sys.executable, "-m", "fitrain.cli", "experiment", "quickstart", f"run_dir={run}",
                    "--step", "corpus", "--step", "data_gen-templates", "--step", "data_gen"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    return run


def dolly_inputs(tmp: Path) -> tuple[Path, Path]:
    from tests.helpers.paths import FIXTURES

    d = FIXTURES / "dolly"
    docs, queries = [], []
    for i, rec in enumerate(json.loads((d / "litgpt_fixture_dolly.json").read_text())):
        queries.append(rec["instruction"])
        if rec.get("context", "").strip():
            docs.append({"id": f"litgpt:{i}", "text": rec["context"]})
    for i, line in enumerate((d / "triforce_reproduce_dolly_151.jsonl").read_text().splitlines()):
        prompt = json.loads(line)["prompt"]
        queries.append(prompt.split("### Instruction:\n", 1)[1].split("\n\n###", 1)[0])
        if "### Input:\n" in prompt:
            docs.append({"id": f"triforce:{i}", "text": prompt.split("### Input:\n", 1)[1].rsplit("\n\n### Response:", 1)[0]})
    dp, qp = tmp / "dolly_docs.jsonl", tmp / "dolly_queries.jsonl"
    dp.write_text("".join(json.dumps(x) + "\n" for x in docs))
    qp.write_text("".join(json.dumps({"instruction": q}) + "\n" for q in queries))
    return dp, qp


def run_dolly(tmp: Path) -> Path:
    """recipes/data_gen/dolly_extractive.yaml's settings on all 54 Dolly contexts and 163 instructions."""
    docs, queries = dolly_inputs(tmp)
    run = tmp / "dolly"
    subprocess.run([sys.executable, "-m", "fitrain.cli", "data-gen", "run", "data_gen/dolly_extractive",
                    f"run_dir={run}", f"templatize.queries=[{queries}]", "templatize.query_column=instruction",
                    "templatize.query_pattern=''", f"match.documents=[{docs}]", "match.text_column=text",
                    "match.id_column=id"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return run


def sample(out: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    picked, documents = [], {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for corpus, run, n_kept, n_dropped in (("python-docs", run_quickstart(tmp), 45, 25),
                                               ("dolly", run_dolly(tmp), 25, 15)):
            rows = judged_rows(run)
            kept = [r for r in rows if r["judge_score"] >= 4]
            dropped = [r for r in rows if r["judge_score"] < 4]
            for r in rng.sample(kept, min(n_kept, len(kept))) + rng.sample(dropped, min(n_dropped, len(dropped))):
                documents[f"{corpus}|{r['doc_id']}"] = r.pop("document")
                r["judge_score_when_drawn"] = r.pop("judge_score")
                picked.append({"corpus": corpus, **r, "label": None})
    head = {"rule": "(state the labelling rule here)", "source": "benchmarks/fallback_quality.py --sample (seed 0)"}
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [head, *picked, {"documents": documents}]))
    print(f"{len(picked)} pairs to label in {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=Path, default=None, help="draw pairs to label into this file")
    ap.add_argument("--labels", type=Path, default=None, help="default: the committed labels")
    args = ap.parse_args()
    if args.sample:
        sample(args.sample)
        return
    from data_gen.config import EncoderConfig
    from data_gen.encoder import Encoder
    from tests.helpers.fallback_labels import figures, load_labels, rejudge

    rule, rows = load_labels(args.labels) if args.labels else load_labels()
    scores = rejudge(rows, Encoder(EncoderConfig(max_length=256)))
    print(f"label rule: {rule}")
    for corpus, f in figures(rows, scores).items():
        print(f"{corpus:<12} labelled {f['labelled']:3d}  kept by the judge {f['kept']:3d}  sensible among kept "
              f"{f['sensible_of_kept']:.2f}  judge keep/drop agrees with the labels {f['agreement']:.2f}  "
              f"(sensible among all labelled {f['sensible_of_all']:.2f})")


if __name__ == "__main__":
    main()
