"""fitrain.data.budget against a brute-force reference on random data."""
import itertools

import numpy as np
import pytest

from fitrain.core.rng import item_rng
from fitrain.data.budget import TokenBudget, select_token_matched


def brute_force(doc_tokens, pair_tokens, keys, seed):
    """Reference: for each document, among all prefixes of its seeded order, take the longest whose total
    fits the document's tokens plus the carry; the unused rest carries over."""
    carry, out = 0, []
    for key, d, pts in zip(keys, doc_tokens, pair_tokens):
        order = item_rng(seed, key).permutation(len(pts)).tolist()
        budget = d + carry
        best = []
        for k in range(len(order) + 1):
            if sum(pts[i] for i in order[:k]) <= budget:
                best = order[:k]
            else:
                break
        out.append(best)
        carry = budget - sum(pts[i] for i in best)
    return out, carry


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_selection_equals_brute_force_and_totals_match(seed):
    rng = np.random.default_rng(seed)
    docs = rng.integers(0, 400, size=300).tolist()
    pairs = [rng.integers(1, 150, size=rng.integers(0, 9)).tolist() for _ in docs]
    keys = [f"doc-{i}" for i in range(len(docs))]
    res = select_token_matched(docs, pairs, seed=seed, doc_keys=keys)
    ref, ref_carry = brute_force(docs, pairs, keys, seed)
    assert res.selected == ref
    b = res.budget
    selected = sum(pairs[j][i] for j, sel in enumerate(res.selected) for i in sel)
    assert b.selected_tokens == selected <= b.document_tokens == sum(docs)
    assert b.document_tokens - b.selected_tokens == b.carry == ref_carry  # the gap is the final carry
    assert b.pairs_selected == sum(map(len, ref)) and b.pairs_in == sum(map(len, pairs))
    # running totals never exceed the documents seen so far
    run_docs = list(itertools.accumulate(docs))
    run_sel = list(itertools.accumulate(sum(pairs[j][i] for i in sel) for j, sel in enumerate(res.selected)))
    assert all(s <= d for s, d in zip(run_sel, run_docs))


def test_order_depends_on_document_key_not_position():
    a = TokenBudget(seed=3)
    b = TokenBudget(seed=3)
    assert b.take("other", 0, [5]) == [] and b.carry == 0  # an earlier document, nothing carried
    pts = [10, 20, 30, 40, 50]
    assert a.take("doc-x", 60, pts) == b.take("doc-x", 60, pts)
    orders = {tuple(TokenBudget(seed=s).take("doc-x", 1000, pts)) for s in range(20)}
    assert len(orders) > 5  # the seed changes the order


def test_rejects_non_positive_tokens():
    with pytest.raises(ValueError):
        TokenBudget().take("d", 10, [0])
