"""The token-for-token budget of the paper (fitrain/docs/method.md, "Token-for-token budget") -- the only
implementation.

Per document, in a seeded random order, pairs are added while the running total of the selected pairs'
tokens (formatted, EOS included, under *our* tokenizer) stays within the budget: the document's own token
count plus whatever earlier documents left unused (it rolls over). Selection stops at the first pair that
would overshoot ("until the next pair would push the total past"). The selected pairs of a corpus
therefore never exceed its documents' tokens, and fall short of them by at most the final carry.

The random order of a document's pairs depends only on ``(seed, doc_key)``, not on where the document
sits in a shard, so data_gen array tasks and ``fitrain prepare`` agree on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from fitrain.core.rng import item_rng


@dataclass
class TokenBudget:
    """Streaming form: call :meth:`take` once per document, in corpus order."""

    seed: int = 0
    carry: int = 0
    document_tokens: int = 0
    selected_tokens: int = 0
    documents: int = 0
    pairs_in: int = 0
    pairs_selected: int = 0

    def take(self, doc_key: str, doc_tokens: int, pair_tokens: Sequence[int]) -> list[int]:
        """Indices (into ``pair_tokens``) of the pairs selected for this document, in selection order."""
        if doc_tokens < 0 or any(t <= 0 for t in pair_tokens):
            raise ValueError(f"document {doc_key}: token counts must be positive")
        budget = doc_tokens + self.carry
        used = 0
        chosen: list[int] = []
        for i in item_rng(self.seed, doc_key).permutation(len(pair_tokens)).tolist():
            if used + pair_tokens[i] > budget:
                break
            used += pair_tokens[i]
            chosen.append(i)
        self.carry = budget - used
        self.document_tokens += doc_tokens
        self.selected_tokens += used
        self.documents += 1
        self.pairs_in += len(pair_tokens)
        self.pairs_selected += len(chosen)
        return chosen

    def to_dict(self) -> dict:
        return {"rule": "token-for-token (per document, seeded order, stop at first overshoot, carry rolls over)",
                "seed": self.seed, "documents": self.documents, "document_tokens": self.document_tokens,
                "selected_tokens": self.selected_tokens, "final_carry": self.carry,
                "pairs_in": self.pairs_in, "pairs_selected": self.pairs_selected}


@dataclass
class BudgetResult:
    selected: list[list[int]] = field(default_factory=list)
    budget: TokenBudget = field(default_factory=TokenBudget)


def select_token_matched(doc_tokens: Sequence[int], pair_tokens: Sequence[Sequence[int]], seed: int = 0,
                         doc_keys: Sequence[str] | None = None) -> BudgetResult:
    """Whole-corpus form of :class:`TokenBudget` (documents in the given order)."""
    if len(doc_tokens) != len(pair_tokens):
        raise ValueError("doc_tokens and pair_tokens must have one entry per document")
    keys = list(doc_keys) if doc_keys is not None else [str(i) for i in range(len(doc_tokens))]
    b = TokenBudget(seed=seed)
    return BudgetResult([b.take(k, d, p) for k, d, p in zip(keys, doc_tokens, pair_tokens)], b)
