"""prepare(): counts vs recount, exact answer supervision, boundary labels, token-for-token budget, bad input."""
import json
from collections import Counter

import numpy as np
import pytest

from fitrain.core.errors import FitrainError
from fitrain.data.loader import IGNORE_INDEX, PackedLoader
from fitrain.data.packing import PackConfig
from fitrain.data.prepare import PrepareConfig, prepare
from fitrain.data.records import InputConfig
from fitrain.data.shards import open_prepared, recount
from fitrain.data.tokenizer import load_tokenizer
from tests.helpers.dolly import dolly_records


def run_prepare(out, tokenizer_dir, paths, seq_len=1024, **kw):
    """``input_*`` / ``pack_*`` keywords go to those sections; the config is built (and checked) at once."""
    section = {"input": {"paths": [str(p) for p in paths]}, "pack": {"seq_len": seq_len}}
    top = {}
    for k, v in kw.items():
        name, _, rest = k.partition("_")
        if name in section:
            section[name][rest] = v
        else:
            top[k] = v
    cfg = PrepareConfig(input=InputConfig(**section["input"]), pack=PackConfig(**section["pack"]),
                        tokenizer=str(tokenizer_dir), out=str(out), progress=False, **top)
    return prepare(cfg)


def segments(directory):
    """Every (tokens, mask) segment in the shards, in row order."""
    data = open_prepared(directory)
    tokens, mask, seg = data.rows(np.arange(data.num_rows))
    for r in range(len(tokens)):
        for s in range(1, int(seg[r].max()) + 1):
            sel = seg[r] == s
            yield tokens[r][sel], mask[r][sel]


@pytest.mark.parametrize("fixture", ["pairs_shards", "documents_shards"])
def test_manifest_counts_equal_recount(request, fixture):
    d = request.getfixturevalue(fixture)
    m = json.loads((d / "manifest.json").read_text())
    c, segs = recount(d)
    for k in ("rows", "total_tokens", "supervised_tokens", "padding_tokens"):
        assert m["counts"][k] == getattr(c, k)
    assert m["segments"] == segs
    if m["kind"] == "pairs":
        assert segs == m["counts"]["pairs"] == 163
    else:  # split documents span several segments
        assert m["counts"]["documents"] == 163 and segs == 163 + m["overlong"]["split_pieces"] - m["overlong"]["split"]
    assert m["counts"]["rows"] * m["seq_len"] == m["counts"]["total_tokens"] + m["counts"]["padding_tokens"]


def test_supervised_tokens_decode_exactly_to_answer_plus_eos(tmp_path, tokenizer_dir, dolly_pairs_file):
    m = run_prepare(tmp_path / "fi", tokenizer_dir, [dolly_pairs_file], seq_len=4096)
    assert m.overlong["truncated"] == 0
    tok = load_tokenizer(tokenizer_dir)
    got = Counter(tok.decode(t[k == 1].tolist()) for t, k in segments(tmp_path / "fi"))
    assert got == Counter(r["response"] + tok.eos_token for r in dolly_records())


def test_boundary_labels_masked_in_real_batches(pairs_shards):
    data = open_prepared(pairs_shards)
    loader = PackedLoader(pairs_shards, batch_size=8, shuffle=False, rank=0, world_size=1)
    seen_boundaries = 0
    for step, b in enumerate(loader):
        _, mask, seg = data.rows(np.arange(step * 8, min(step * 8 + 8, data.num_rows)))
        n = len(seg)
        labels, pos = b["labels"][:n].numpy(), b["position_ids"][:n].numpy()
        start = np.ones_like(seg, dtype=bool)
        start[:, 1:] = seg[:, 1:] != seg[:, :-1]
        seen_boundaries += int(start[:, 1:].sum())
        assert (labels[start] == IGNORE_INDEX).all() and (pos[start] == 0).all()
        assert ((labels != IGNORE_INDEX) == ((mask == 1) & (seg > 0))).all()
    assert seen_boundaries > 50


def test_token_for_token_budget_matches_standard_arm(tmp_path, tokenizer_dir, dolly_pairs_file):
    fi = run_prepare(tmp_path / "fi", tokenizer_dir, [dolly_pairs_file], seq_len=4096, budget=_budget())
    std = run_prepare(tmp_path / "std", tokenizer_dir, [dolly_pairs_file], seq_len=4096,
                      documents_from_pairs=True, budget_from=str(tmp_path / "fi"))
    b = fi.budget
    assert fi.overlong["truncated"] == 0 and fi.counts.total_tokens == b["selected_tokens"]
    assert std.counts.total_tokens == b["document_tokens"]
    assert std.counts.total_tokens - fi.counts.total_tokens == b["final_carry"] >= 0
    assert std.matched_budget["budget"] == b and fi.counts.pairs == b["pairs_selected"]
    # the same documents as a plain documents input give the same total
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": r["context"] or r["response"]}) + "\n" for r in dolly_records()))
    plain = run_prepare(tmp_path / "plain", tokenizer_dir, [docs], seq_len=4096, input_kind="documents")
    assert plain.counts.total_tokens == std.counts.total_tokens
    with pytest.raises(FitrainError, match="without a budget"):
        run_prepare(tmp_path / "x", tokenizer_dir, [docs], seq_len=4096, input_kind="documents",
                    budget_from=str(tmp_path / "plain"))


def _budget():
    from fitrain.data.prepare import BudgetConfig

    return BudgetConfig(enabled=True, seed=1)


def test_judge_filter_and_rejects_recorded(tmp_path, tokenizer_dir):
    rows = [{"warc_record_id": "d1", "text": "Doc one.", "instantiated_instruction": "q1", "answer": "a1", "judge_score": 5},
            {"warc_record_id": "d1", "instantiated_instruction": "q2", "answer": "a2", "judge_score": 2},
            {"warc_record_id": "d1", "instantiated_instruction": "", "answer": "a3", "judge_score": 5},
            {"warc_record_id": "d2", "text": "Doc two.", "instantiated_instruction": "q4", "answer": "a4", "judge_score": 4}]
    p = tmp_path / "p.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = run_prepare(tmp_path / "o", tokenizer_dir, [p], seq_len=64, input_min_judge_score=4.0)
    assert m.counts.pairs == 2 and m.counts.documents == 2
    assert dict(m.filtered.counts) == {"below_min_judge_score": 1}
    assert dict(m.rejects.counts) == {"empty_instruction": 1} and m.min_judge_score == 4.0


def test_finished_directory_is_reused_and_changed_settings_rebuild_only_with_overwrite(tmp_path, tokenizer_dir,
                                                                                      dolly_pairs_file):
    a = run_prepare(tmp_path / "o", tokenizer_dir, [dolly_pairs_file], seq_len=512)
    b = run_prepare(tmp_path / "o", tokenizer_dir, [dolly_pairs_file], seq_len=512)
    assert a == b
    with pytest.raises(FitrainError, match=r"another configuration \(pack.seq_len: 512 -> 256\)"):
        run_prepare(tmp_path / "o", tokenizer_dir, [dolly_pairs_file], seq_len=256)
    c = run_prepare(tmp_path / "o", tokenizer_dir, [dolly_pairs_file], seq_len=256, overwrite=True)
    assert c.fingerprint != a.fingerprint
    assert sorted(p.name for p in (tmp_path / "o").glob("shard_*.tokens.npy")) == \
        [f"shard_{i:05d}.tokens.npy" for i in range(len(c.shards))]


def test_bad_input_gives_clear_errors(tmp_path, tokenizer_dir, dolly_pairs_file):
    with pytest.raises(FitrainError, match="tokenizer not found"):
        run_prepare(tmp_path / "o", tmp_path / "no-tok", [dolly_pairs_file])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(FitrainError, match="nothing to write"):
        run_prepare(tmp_path / "o", tokenizer_dir, [empty])
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1garbagePAR1")
    with pytest.raises(FitrainError, match="cannot read parquet"):
        run_prepare(tmp_path / "o", tokenizer_dir, [tmp_path / "corrupt.parquet"])
    with pytest.raises(FitrainError, match="split is for raw documents only"):
        run_prepare(tmp_path / "o", tokenizer_dir, [dolly_pairs_file], pack_overlong="split")
    with pytest.raises(FitrainError, match="applies to a pairs input"):
        run_prepare(tmp_path / "o", tokenizer_dir, [dolly_pairs_file], documents_from_pairs=True, budget=_budget())
    with pytest.raises(FitrainError, match="no input"):
        run_prepare(tmp_path / "o", tokenizer_dir, [])
