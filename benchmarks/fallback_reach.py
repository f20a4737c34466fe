"""The offline fallback's reach: yield and a sample of final pairs on two corpora it was never tuned on, with
the quickstart's settings unchanged (recipes/data_gen/quickstart.yaml: the shipped template bank, MiniLM, the
extractive instantiate + judge). README "The offline fallback's reach" reports what this printed.

* ``packages``: the long descriptions (README text) of the installed Python packages' METADATA, one document
  per package (its first part of at most 1,200 characters), up to 80 packages in name order;
* ``alpaca_gpt4``: the GPT-4 reference answers of AlpacaEval carried in tests/fixtures (assistant prose on
  open-domain topics), those of at least 300 characters.

    .venv/bin/python benchmarks/fallback_reach.py --sample OUT.jsonl   # run both; up to 10 final pairs each

Nothing here tunes the fallback: the corpora are only read.
"""
from __future__ import annotations

import argparse
import email
import json
import random
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_docs(limit: int = 80, max_chars: int = 1200) -> list[dict]:
    docs = []
    dirs = dict.fromkeys(Path(x) for x in [*sys.path, sysconfig.get_paths()["purelib"]] if x.endswith("site-packages"))
    metas = sorted({m.parent.name: m for d in dirs for m in d.glob("*.dist-info/METADATA")}.items())
    for _, meta in metas:
        body = email.message_from_string(meta.read_text(encoding="utf-8", errors="replace")).get_payload()
        if not isinstance(body, str) or len(body) < 400:
            continue
        part = ""
        for para in body.strip().split("\n\n"):  # whole paragraphs; a longer one than fits is skipped
            if len(part) + len(para) + 2 <= max_chars:
                part = f"{part}\n\n{para}" if part else para
        if len(part) >= 300:
            docs.append({"id": meta.parent.name, "text": part})
        if len(docs) == limit:
            break
    return docs


def alpaca_docs() -> list[dict]:
    rows = json.loads((REPO / "tests" / "fixtures" / "alpaca_eval" / "gpt4_1106_preview_model_outputs.json").read_text())
    return [{"id": f"alpaca:{i}", "text": r["output"]} for i, r in enumerate(rows) if len(r["output"]) >= 300]


def run(corpus: str, docs: list[dict], tmp: Path) -> dict:
    import pyarrow.parquet as pq

    path = tmp / f"{corpus}.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = tmp / corpus
    subprocess.run([sys.executable, "-m", "fitrain.cli", "data-gen", "run", "data_gen/quickstart", f"run_dir={out}",
                    "num_shards=1", "match.builtin_corpus=false", f"match.documents=[{path}]",
                    "match.text_column=text", "match.id_column=id", "match.max_documents=0"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    rep = json.loads((out / "data_gen" / "report.json").read_text())
    pairs = [r for p in sorted((out / "data_gen" / "final").glob("shard-*/pairs.parquet"))
             for r in pq.read_table(p).to_pylist()]
    stages = {k: (v.get("in"), v.get("out")) for k, v in rep.items() if isinstance(v, dict) and "in" in v}
    templates = {r["template_id"]: r["template"] for p in (out / "data_gen" / "templates").glob("shard-*/templates.parquet")
                 for r in pq.read_table(p).to_pylist()}
    best: dict[str, dict] = {}  # each matched document's most similar template: what instantiate was offered
    for p in sorted((out / "data_gen" / "matches").glob("shard-*/matches.parquet")):
        for m in pq.read_table(p).to_pylist():
            if m["doc_id"] not in best or m["similarity"] > best[m["doc_id"]]["similarity"]:
                best[m["doc_id"]] = {**m, "template": templates.get(m["template_id"], "")}
    return {"corpus": corpus, "documents": len(docs), "final_pairs": len(pairs),
            "documents_with_pairs": len({p["doc_id"] for p in pairs}), "stages": stages, "pairs": pairs,
            "candidates": list(best.values())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=Path, required=True,
                    help="write up to 10 final pairs and 10 matched (document, best template) per corpus here")
    args = ap.parse_args()
    rng = random.Random(0)
    lines = []
    with tempfile.TemporaryDirectory() as t:
        for corpus, docs in (("packages", package_docs()), ("alpaca_gpt4", alpaca_docs())):
            r = run(corpus, docs, Path(t))
            print(f"{corpus}: {r['documents']} documents -> {r['final_pairs']} final pairs from "
                  f"{r['documents_with_pairs']} documents; stages (in, out): {r['stages']}", flush=True)
            texts = {d["id"]: d["text"] for d in docs}
            for p in rng.sample(r["pairs"], min(10, len(r["pairs"]))):
                lines.append({"corpus": corpus, "kind": "final_pair", "doc_id": p["doc_id"],
                              "instruction": p["instruction"], "answer": p["answer"],
                              "document": texts.get(p["doc_id"], "")[:600], "label": None})
            # the declined side: each sampled matched document's best template (could it have been filled?)
            for c in rng.sample(r["candidates"], min(10, len(r["candidates"]))):
                lines.append({"corpus": corpus, "kind": "best_match", "doc_id": c["doc_id"],
                              "similarity": round(c["similarity"], 3), "template": c["template"],
                              "document": texts.get(c["doc_id"], "")[:600], "label": None})
    args.sample.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    print(f"{len(lines)} rows to label in {args.sample}")


if __name__ == "__main__":
    main()
