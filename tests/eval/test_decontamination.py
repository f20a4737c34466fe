import json

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.data.records import Document, DocumentPairs, InputConfig, Pair, write_pairs_parquet
from fitrain_eval.decontamination import DecontaminationConfig, decontaminate, eval_sets
from tests.helpers.eval_clients import DATA

MIX = DATA / "mixeval" / "mixeval-2024-08-11"
MT = DATA / "mt_bench_101" / "mtbench101.jsonl"
ALPACA = DATA / "alpaca_eval" / "example_outputs.json"


def test_overlap_per_benchmark_on_the_real_eval_sets(tmp_path):
    r = Rejects()
    sets = eval_sets(["mixeval_hard", "mtbench101", "alpaca_eval"], str(MIX), str(MT), str(ALPACA), r)
    assert r.total == 0 and len(sets["mtbench101"]) == 39 and len(sets["alpaca_eval"]) == 120
    assert len(sets["mixeval_hard"]) == 75  # the fixture subsets (tests/fixtures/PROVENANCE.md)
    hard_ff = json.loads((MIX / "mixeval-hard" / "free-form.json").read_text())
    alpaca = json.loads(ALPACA.read_text())
    mt_first = json.loads(MT.read_text().splitlines()[0])
    long_alpaca = next(i for i, x in enumerate(alpaca) if len(x["instruction"].split()) > 30)
    half = " ".join(alpaca[long_alpaca]["instruction"].split()[:8])  # one n-gram only: below threshold
    groups = [
        DocumentPairs(Document("d1", "Some web page. " + hard_ff["1"]["prompt"] + " More text."),
                      [Pair("d1", "What is the capital of France?", "Paris.")]),
        DocumentPairs(Document("d2", "Unrelated."),
                      [Pair("d2", alpaca[3]["instruction"], "An answer."),
                       Pair("d2", "Tell me: " + half, " ".join(h["user"] for h in mt_first["history"]))]),
    ]
    write_pairs_parquet(tmp_path / "pairs.parquet", groups)
    cfg = DecontaminationConfig(enabled=True, train=InputConfig(paths=[str(tmp_path / "pairs.parquet")]))
    m, details = decontaminate(cfg, sets, Rejects())
    assert m["decontamination/mixeval_hard/contaminated"] == 1
    assert details["benchmarks"]["mixeval_hard"]["examples"] == [{"id": "free_form:1", "overlap": 1.0}]
    assert m["decontamination/alpaca_eval/contaminated"] == 1
    assert details["benchmarks"]["alpaca_eval"]["examples"][0]["id"] == "3"
    assert m["decontamination/mtbench101/contaminated"] == 1
    assert m["decontamination/mtbench101/contaminated_fraction"] == pytest.approx(
        1 / m["decontamination/mtbench101/n_checked"])
    n = details["benchmarks"]["alpaca_eval"]
    assert n["checked"] + n["too_short"] == 120 and n["too_short"] > 0
    # without the source documents, the MixEval prompt hidden in document d1 is not seen
    cfg.include_documents = False
    m2, _ = decontaminate(cfg, sets, Rejects())
    assert m2["decontamination/mixeval_hard/contaminated"] == 0


def test_documents_input_and_errors(tmp_path):
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "nothing to see here at all today friends"}) + "\n")
    cfg = DecontaminationConfig(train=InputConfig(paths=[str(tmp_path / "docs.jsonl")], kind="documents"))
    sets = {"toy": [("a", "nothing to see here at all today friends ok"), ("b", "short one")]}
    m, _ = decontaminate(cfg, sets, Rejects())
    assert m["decontamination/toy/contaminated"] == 1 and m["decontamination/toy/n_too_short"] == 1
    with pytest.raises(FitrainError, match="train.paths is empty"):
        decontaminate(DecontaminationConfig(), sets, Rejects())
    with pytest.raises(FitrainError, match="unknown decontamination benchmark"):
        eval_sets(["gsm8k"], str(MIX), str(MT), str(ALPACA), Rejects())


def test_the_recipe_command_reads_what_data_gen_writes(tmp_path):
    """recipes/eval/decontamination.yaml's documented train glob, run as written on data_gen's final layout
    (``final/shard-NNNNN/pairs.parquet``), reads the pairs."""
    import re
    from pathlib import Path

    from fitrain.cli import main

    recipe = (Path(__file__).parents[2] / "recipes" / "eval" / "decontamination.yaml").read_text()
    glob = re.search(r"decontamination\.train\.paths='?\[runs/exp/([^\]\s]+)\]", recipe).group(1)
    alpaca = json.loads(ALPACA.read_text())
    shard = tmp_path / "data_gen" / "final" / "shard-00000"
    shard.mkdir(parents=True)
    write_pairs_parquet(shard / "pairs.parquet", [DocumentPairs(Document("d1", "A page."),
                                                                [Pair("d1", alpaca[3]["instruction"], "An answer.")])])
    out = tmp_path / "eval" / "data"
    assert main(["eval", "eval/decontamination", f"out={out}", f"decontamination.train.paths=[{tmp_path}/{glob}]",
                 "decontamination.benchmarks=[alpaca_eval]", f"pairwise.instructions={ALPACA}"]) == 0
    assert json.loads((out / "results.json").read_text())["decontamination/alpaca_eval/contaminated"] == 1
