"""Pair and document -> token ids + supervised-target mask (the training text format).

A pair is rendered as ``prefix | answer | suffix`` + EOS, where the template (default
``Instruction: {instruction}\\n\\nAnswer: {answer}``) is cut at ``{answer}``: ``prefix`` is everything
before it with the instruction filled in (``Instruction: ...\\n\\nAnswer: `` -- note the trailing space),
``suffix`` everything after it (empty by default). **The three pieces are tokenized separately** and
concatenated, so that:

* under the ``response`` mask the supervised tokens are exactly ``tokens(answer) + tokens(suffix) + EOS``
  and decode to exactly ``answer + suffix + EOS`` (no merge can straddle the prefix/answer boundary);
* :meth:`Formatter.prompt_ids` / ``tokenizer(generation_prompt(instruction), add_special_tokens=False)``
  (plus BOS when ``add_bos``) give the model **exactly the token prefix it saw in training**, so
  generation continues where training supervised it.

The exact-decoding guarantee holds for tokenizers that add nothing at the start of a piece (byte-level
BPE: ours, GPT-2, Llama-3); a SentencePiece tokenizer that prepends ``▁`` to every piece still trains
consistently with its prompts, but its answer tokens decode with that extra leading space.

Raw documents: ``[BOS] text EOS``, every token a supervised target. In both cases the first token of an
item is never a target (nothing precedes it within its segment), so ``mask[0] = 0``; the supervised count
of an item is therefore ``mask.sum()`` and equals what the loss will see.

Token counts for the token-for-token budget come from the same functions prepare uses
(:meth:`Formatter.pair_token_counts`, :meth:`Formatter.document_token_counts`), so the budgeted pair
tokens and the standard arm's document tokens are measured exactly as prepare will produce them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fitrain.core.checks import check_fields, fail, one_of
from fitrain.core.errors import FitrainError

LOSS_MASKS = ("response", "all")


@dataclass
class FormatConfig:
    template: str = "Instruction: {instruction}\n\nAnswer: {answer}"
    loss_mask: str = "response"        # response: answer + suffix + EOS supervised; all: every token
    use_chat_template: bool = False    # render with the tokenizer's chat template instead of `template`
    add_bos: bool = False              # prepend the tokenizer's BOS token to every pair and document

    def __post_init__(self) -> None:
        check_fields(self, loss_mask=one_of(*LOSS_MASKS))
        if not self.use_chat_template:
            for ph in ("{instruction}", "{answer}"):
                if self.template.count(ph) != 1:
                    fail("template", f"must contain {ph} exactly once: {self.template!r}")
            if self.template.index("{instruction}") > self.template.index("{answer}"):
                fail("template", "must put {instruction} before {answer}")

    def pieces(self, instruction: str) -> tuple[str, str]:
        """(prefix, suffix) of the plain template for one instruction."""
        head, suffix = self.template.split("{answer}")
        return head.replace("{instruction}", instruction), suffix

    def generation_prompt(self, instruction: str, tokenizer: Any = None) -> str:
        """The training text before the answer (``Instruction: ...\\n\\nAnswer: ``, trailing space
        included). Tokenized with ``add_special_tokens=False`` (plus BOS if ``add_bos``) it is exactly the
        token prefix the model was trained on. The chat-template format needs the tokenizer."""
        if self.use_chat_template:
            if tokenizer is None:
                raise FitrainError("format.use_chat_template: generation_prompt needs the tokenizer")
            return _chat_prefix(tokenizer, instruction)
        return self.pieces(instruction)[0]


def _chat_prefix(tok: Any, instruction: str) -> str:
    if not getattr(tok, "chat_template", None):
        raise FitrainError("format.use_chat_template is set but the tokenizer has no chat template")
    return tok.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                   add_generation_prompt=True)


def _chat_pieces(tok: Any, instruction: str, answer: str) -> tuple[str, str]:
    prefix = _chat_prefix(tok, instruction)
    full = tok.apply_chat_template([{"role": "user", "content": instruction},
                                    {"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prefix) or not full[len(prefix):].startswith(answer):
        raise FitrainError("the tokenizer's chat template does not render the assistant answer verbatim right "
                           "after the generation prompt; use the plain `format.template` instead")
    suffix = full[len(prefix) + len(answer):]
    if tok.eos_token and suffix.endswith(tok.eos_token):
        suffix = suffix[: -len(tok.eos_token)]  # EOS is appended as an id
    return prefix, suffix


class Formatter:
    """Tokenizes pairs and documents for one tokenizer + format (batched ``encode_batch``)."""

    def __init__(self, tokenizer: Any, cfg: FormatConfig):
        self.tok = tokenizer
        self.cfg = cfg
        self.eos_id = tokenizer.eos_token_id
        if self.eos_id is None:
            raise FitrainError("the tokenizer has no eos_token")
        self.bos: list[int] = []
        if cfg.add_bos:
            if tokenizer.bos_token_id is None:
                raise FitrainError("format.add_bos is set but the tokenizer has no bos_token")
            self.bos = [tokenizer.bos_token_id]
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._suffix_cache: dict[str, np.ndarray] = {}

    # -------------------------------------------------------------------------------------------- text
    def encode_texts(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text, no special tokens added (one batched call, no offsets computed)."""
        if not texts:
            return []
        if self._backend is not None:
            encode = getattr(self._backend, "encode_batch_fast", None) or self._backend.encode_batch
            return [np.asarray(e.ids, dtype=np.int64) for e in encode(list(texts), add_special_tokens=False)]
        ids = self.tok(list(texts), add_special_tokens=False)["input_ids"]
        return [np.asarray(x, dtype=np.int64) for x in ids]

    def pair_texts(self, instruction: str, answer: str) -> tuple[str, str, str]:
        if self.cfg.use_chat_template:
            prefix, suffix = _chat_pieces(self.tok, instruction, answer)
        else:
            prefix, suffix = self.cfg.pieces(instruction)
        return prefix, answer, suffix

    def prompt_ids(self, instruction: str) -> list[int]:
        """The exact token prefix a pair with this instruction had in training (BOS included)."""
        prompt = self.cfg.generation_prompt(instruction, self.tok)
        return self.bos + self.encode_texts([prompt])[0].tolist()

    # ------------------------------------------------------------------------------------------- items
    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(ids, mask)`` per (instruction, answer): ``[BOS] prefix answer suffix EOS``."""
        if not pairs:
            return []
        pieces = [self.pair_texts(i, a) for i, a in pairs]
        encoded = self.encode_texts([p[0] for p in pieces] + [p[1] for p in pieces])
        n = len(pieces)
        head = np.asarray(self.bos, dtype=np.int64)
        tail = np.asarray([self.eos_id], dtype=np.int64)
        parts: list[np.ndarray] = []
        for pre, ans, suf in zip(encoded[:n], encoded[n:], (self._suffix(p[2]) for p in pieces)):
            parts += (head, pre, ans, suf, tail)
        prefix_target = 0 if self.cfg.loss_mask == "response" else 1
        targets = np.tile(np.array([prefix_target, prefix_target, 1, 1, 1], dtype=np.uint8), n)
        return _split_items(parts, targets, 5)

    def _suffix(self, text: str) -> np.ndarray:
        ids = self._suffix_cache.get(text)
        if ids is None:
            ids = self.encode_texts([text])[0] if text else np.zeros(0, dtype=np.int64)
            if len(self._suffix_cache) < 64:
                self._suffix_cache[text] = ids
        return ids

    def encode_documents(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(ids, mask)`` per raw document: ``[BOS] text EOS``, all targets but the first token."""
        if not texts:
            return []
        head = np.asarray(self.bos, dtype=np.int64)
        tail = np.asarray([self.eos_id], dtype=np.int64)
        parts: list[np.ndarray] = []
        for body in self.encode_texts(texts):
            parts += (head, body, tail)
        return _split_items(parts, np.ones(3 * len(texts), dtype=np.uint8), 3)

    # ----------------------------------------------------------------------------------------- counting
    def pair_token_counts(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        """Formatted tokens per pair, EOS (and BOS) included: what prepare places in a row."""
        return [len(ids) for ids, _ in self.encode_pairs(pairs)]

    def document_token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per raw document as prepare produces them, EOS (and BOS) included."""
        return [len(ids) for ids, _ in self.encode_documents(texts)]


def _split_items(parts: list[np.ndarray], targets: np.ndarray, per_item: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Concatenate the pieces once, build the mask with one ``np.repeat`` (piece target flag x piece
    length), zero each item's first position and split back into per-item views (no per-token Python)."""
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    ids = np.concatenate(parts)
    mask = np.repeat(targets, lengths)
    bounds = np.cumsum(lengths.reshape(-1, per_item).sum(axis=1))[:-1]
    mask[np.concatenate([[0], bounds])] = 0
    return list(zip(np.split(ids, bounds), np.split(mask, bounds)))
