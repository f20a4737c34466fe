import numpy as np
import pytest

from data_gen.config import IndexConfig, MatchConfig
from data_gen.index import build_faiss, choose_kind
from data_gen.match import candidates, sample_templates, slot_weights, target_distribution


def unit(n, d, seed):
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind,extra", [("flat", {}), ("ivf", {"nlist": 16, "nprobe": 16}), ("hnsw", {"ef_search": 256})])
def test_index_kinds_agree_with_brute_force_over_shards(kind, extra):
    base = unit(3000, 32, 0)
    queries = unit(50, 32, 1)
    index = build_faiss([base[:1000], base[1000:2500], base[2500:]], IndexConfig(kind=kind, train_size=3000, **extra))
    sims, rows = index.search(queries, 5)
    brute = queries @ base.T
    want = np.argsort(-brute, axis=1)[:, :5]
    recall = np.mean([len(set(r) & set(w)) / 5 for r, w in zip(rows, want)])
    assert recall >= (1.0 if kind != "hnsw" else 0.95)
    np.testing.assert_allclose(sims[:, 0], brute[np.arange(50), rows[:, 0]], atol=1e-5)


def test_auto_kind():
    assert choose_kind(IndexConfig(), 10) == "flat"
    assert choose_kind(IndexConfig(flat_max=100), 101) == "ivf"


def test_candidates_keep_best_chunk_above_threshold():
    sims = np.array([[0.9, 0.7], [0.95, 0.8], [0.5, 0.4]], np.float32)  # 3 vectors (global + 2 local)
    rows = np.array([[4, 7], [7, 4], [9, -1]])
    c = candidates(sims, rows, 0.75)
    assert c == {4: (pytest.approx(0.9), 0), 7: (pytest.approx(0.95), 1)}
    assert candidates(sims, rows, 0.865) == {4: (pytest.approx(0.9), 0), 7: (pytest.approx(0.95), 1)}
    assert candidates(sims, rows, 0.96) == {}


def test_slot_weights_make_sampled_slot_counts_follow_the_target():
    slots = np.array([1] * 90 + [2] * 9 + [3] * 1)  # candidates are dominated by 1-slot templates
    target = {1: 0.2, 2: 0.3, 3: 0.5}
    w = slot_weights(slots, target)
    mass = {s: w[slots == s].sum() for s in (1, 2, 3)}
    assert mass == pytest.approx(target)
    # sampling many documents: slot counts follow the target, not the candidate mix
    cands = {r: (0.9, 0) for r in range(100)}
    got = np.array([slots[r] for d in range(600) for r in sample_templates(f"d{d}", cands, slots, target, 1, 0)])
    frac = {s: float(np.mean(got == s)) for s in (1, 2, 3)}
    assert frac[1] == pytest.approx(0.2, abs=0.06) and frac[3] == pytest.approx(0.5, abs=0.06)
    # six distinct templates per document, reproducible per document id
    six = sample_templates("doc", cands, slots, target, 6, 0)
    assert len(set(six)) == 6 and six == sample_templates("doc", cands, slots, target, 6, 0)
    # a target that knows none of the candidates' slot counts falls back to uniform
    assert slot_weights(np.array([4, 4]), {1: 1.0}).tolist() == [0.5, 0.5]


def test_target_distribution_defaults_to_the_bank():
    assert target_distribution(MatchConfig(), {"slot_counts": {"1": 30, "2": 10}}) == {1: 0.75, 2: 0.25}
    assert target_distribution(MatchConfig(slot_count_target={2: 1.0}), {"slot_counts": {"1": 3}}) == {2: 1.0}


def test_a_job_with_several_shards_reads_the_corpus_once_and_gets_the_same_documents(tmp_path, monkeypatch):
    import json

    from data_gen import match
    from data_gen.config import DataGenConfig
    from data_gen.shards import shard_dir
    from fitrain.core.accounting import Rejects
    from fitrain.core.io import mark_done

    corpus = tmp_path / "docs.jsonl"
    rows = [{"id": f"d{j}", "text": f"document {j}"} for j in range(23)] + [{"id": "bad", "text": ""}]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataGenConfig(run_dir=str(tmp_path), num_shards=5)
    cfg.match.documents, cfg.match.id_column = [str(corpus)], "id"
    expected = {i: [d.doc_id for d in match.shard_documents(cfg, i, 5, Rejects())] for i in range(5)}
    passes = []
    real = match.iter_documents
    monkeypatch.setattr(match, "iter_documents", lambda *a, **k: passes.append(1) or real(*a, **k))
    stage = tmp_path / "matches"
    mark_done(shard_dir(stage, 3))  # finished earlier: not spooled, not read
    with match.TaskDocuments(cfg, stage, [0, 1, 2, 3, 4]) as docs:
        got, rejects = {}, Rejects()
        for i in (0, 1, 2, 4):
            got[i] = [d.doc_id for d in docs(i, rejects)]
        assert (stage / f".spool-{__import__('os').getpid()}").is_dir()
    assert got == {i: expected[i] for i in (0, 1, 2, 4)} and len(passes) == 1
    assert dict(rejects.counts) == {"empty_document": 1}  # counted once, by shard 0
    assert not any(p.name.startswith(".spool") for p in stage.iterdir())  # scratch removed
    with match.TaskDocuments(cfg, stage, 2) as docs:  # one shard: read directly, no spool
        assert [d.doc_id for d in docs(2, Rejects())] == expected[2]
