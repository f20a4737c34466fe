"""Train and load the tokenizers fitrain uses.

``fitrain tokenizer train`` trains a byte-level BPE (the ``tokenizers`` library) for CPU experiments and
saves it as a transformers ``PreTrainedTokenizerFast`` directory that ``AutoTokenizer.from_pretrained(dir)``
loads offline. Byte-level BPE without a prefix space round-trips any UTF-8 text exactly, which the
response mask relies on (the supervised tokens of a pair decode back to exactly the answer + EOS).

Training text comes from plain text files/globs (``files``, one document per file, or per line with
``one_document_per_line``) and/or from the records inputs (``input``: raw documents, or pair files, whose
document texts, instructions and answers are all used). The output directory is replaced as a whole.

``pretrained`` (an HF tokenizer directory or hub id, e.g. Llama-3's, which the paper used for every model)
takes that tokenizer instead of training one: :func:`adopt_pretrained` checks that its special tokens can
serve the training format and saves it to ``out``, where prepare, training, export and eval read it like a
trained one. The format needs an EOS token (it ends every document and answer; none is a one-line error)
and a pad token distinct from EOS (padding is told apart from a real EOS). A tokenizer without one (Llama-3's
base tokenizer has none) gets ``pad_token``: an existing token of the vocabulary when it names one (the
Llama-3 recipes name ``<|reserved_special_token_0|>``, keeping the 128,256 ids), else added as a new special
token (one more id). ``fitrain_tokenizer.json`` beside it records the source, the pad token and what was added.

A tokenizer's identity is :func:`tokenizer_identity`, a hash of what maps text to ids; prepare records it
and training refuses data prepared with another tokenizer, even one of the same size and pad id.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from fitrain.core.accounting import Rejects
from fitrain.core.checks import NON_NEGATIVE, POSITIVE, check_fields, integer, interval
from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_dir
from fitrain.data.records import InputConfig, expand_paths

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class TokenizerConfig:
    pretrained: str = ""       # an HF tokenizer directory or hub id to use instead of training one ('' = train)
    files: list[str] = field(default_factory=list)   # plain text files or globs
    one_document_per_line: bool = False
    input: InputConfig = field(default_factory=InputConfig)  # records inputs (input.paths empty = unused)
    out: str = "tokenizer"
    vocab_size: int = 8192
    min_frequency: int = 2
    eos_token: str = "<|endoftext|>"
    pad_token: str = "<|pad|>"
    bos_token: str = ""                # '' = no BOS token
    max_chars: int = 0                 # stop reading training text after this many characters (0 = all)
    model_max_length: int = 1_000_000
    overwrite: bool = False            # replace a tokenizer trained with other settings at `out` (--overwrite)

    def __post_init__(self) -> None:
        check_fields(self, vocab_size=integer(interval("[259, 2**31)")), min_frequency=NON_NEGATIVE,
                     max_chars=NON_NEGATIVE, model_max_length=POSITIVE)


def _text_files(cfg: TokenizerConfig, rejects: Rejects) -> Iterator[str]:
    for path in expand_paths(cfg.files):
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            rejects.add("invalid_utf8", path, str(e))
            continue
        if cfg.one_document_per_line:
            yield from (line for line in text.splitlines() if line.strip())
        elif text.strip():
            yield text


def _records(cfg: TokenizerConfig, rejects: Rejects) -> Iterator[str]:
    from fitrain.data.records import iter_document_pairs, iter_documents

    if cfg.input.kind == "documents":
        yield from (d.text for d in iter_documents(cfg.input, rejects) if d.text)
        return
    for g in iter_document_pairs(cfg.input, rejects):
        if g.document.text:
            yield g.document.text
        for p in g.pairs:
            yield p.instruction
            yield p.answer


def training_texts(cfg: TokenizerConfig, rejects: Rejects | None = None) -> Iterator[str]:
    """The training texts, in order, capped at ``max_chars`` characters."""
    rejects = rejects if rejects is not None else Rejects()
    if not cfg.files and not cfg.input.paths:
        raise FitrainError("tokenizer: no training text; set `files` (text files/globs) or `input.paths`")
    sources = []
    if cfg.files:
        sources.append(_text_files(cfg, rejects))
    if cfg.input.paths:
        sources.append(_records(cfg, rejects))
    seen = 0
    for src in sources:
        for text in src:
            if cfg.max_chars and seen + len(text) > cfg.max_chars:
                if cfg.max_chars - seen > 0:
                    yield text[: cfg.max_chars - seen]
                return
            seen += len(text)
            yield text


def train_tokenizer_from_texts(texts: Any, cfg: TokenizerConfig,
                               extra_files: Callable[[], dict[str, str]] | None = None) -> Path:
    """Train a byte-level BPE on an iterable of strings and save it to ``cfg.out`` (replaced as a whole);
    returns the directory. ``extra_files()`` (called after training) adds {name: text} files beside it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if cfg.vocab_size < 256 + 3:
        raise FitrainError(f"vocab_size must be at least 259 (256 bytes + special tokens), got {cfg.vocab_size}")
    specials = [t for t in (cfg.eos_token, cfg.pad_token, cfg.bos_token) if t]
    if not cfg.eos_token or not cfg.pad_token:
        raise FitrainError("tokenizer needs an eos_token and a pad_token")
    if len(set(specials)) != len(specials):
        raise FitrainError(f"special tokens must be distinct, got {specials}")
    settings = _check_replace(cfg)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                  special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    n = 0

    def counted() -> Iterator[str]:
        nonlocal n
        for t in texts:
            n += 1
            yield t

    tok.train_from_iterator(counted(), trainer=trainer)
    if n == 0:
        raise FitrainError("tokenizer: the training inputs hold no text")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=cfg.eos_token, pad_token=cfg.pad_token,
                                   bos_token=cfg.bos_token or None, model_max_length=cfg.model_max_length,
                                   clean_up_tokenization_spaces=False)
    out = Path(cfg.out)
    # written whole or not at all: a full disk never leaves a half-saved tokenizer that prepare would load
    with atomic_dir(out) as tmp:
        fast.save_pretrained(str(tmp))
        # transformers 5 writes its new class name; the classic name loads in transformers 4.x and 5.x alike
        conf = tmp / "tokenizer_config.json"
        data = json.loads(conf.read_text())
        data["tokenizer_class"] = "PreTrainedTokenizerFast"
        conf.write_text(json.dumps(data, indent=2) + "\n")
        if extra_files is not None:
            for name, text in extra_files().items():
                (tmp / name).write_text(text)
        (tmp / SETTINGS).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return out


SETTINGS = "fitrain_tokenizer.json"   # the settings a tokenizer was trained with (not part of its hash)


def _check_replace(cfg: TokenizerConfig) -> dict:
    """The settings to record; refuses to replace a tokenizer at ``cfg.out`` trained with other settings (or
    one fitrain did not record) unless ``cfg.overwrite`` (fitrain.core.overwrite)."""
    from fitrain.core.config import to_dict
    from fitrain.core.overwrite import IGNORED, refuse_other_config

    settings = json.loads(json.dumps({k: v for k, v in to_dict(cfg).items() if k not in IGNORED}, default=str))
    out = Path(cfg.out)
    if cfg.overwrite or not (out / "tokenizer.json").is_file():
        return settings
    try:
        recorded = json.loads((out / SETTINGS).read_text())
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict):
        raise FitrainError(f"{out} holds a tokenizer whose settings were not recorded (not trained by this "
                           "fitrain); pass --overwrite to replace it, or write to a new directory")
    refuse_other_config("tokenizer", out, recorded, settings)
    return settings


def adopt_pretrained(cfg: TokenizerConfig) -> Path:
    """Save the ``pretrained`` tokenizer to ``cfg.out``, with a pad token distinct from EOS (module docstring);
    FitrainError (one line) when it cannot be loaded or has no EOS."""
    from transformers import AutoTokenizer

    src = cfg.pretrained
    local = Path(src).expanduser()
    path_like = local.is_dir() or src.startswith(("/", ".", "~"))  # else a hub id (downloaded, or from HF's cache)
    try:
        tok = AutoTokenizer.from_pretrained(str(local) if path_like else src, local_files_only=path_like)
    except Exception as e:  # noqa: BLE001  (missing files, no network for a hub id, a broken tokenizer.json)
        raise FitrainError(f"tokenizer.pretrained '{src}': cannot load it: {type(e).__name__}: "
                           f"{(str(e).splitlines() or [''])[0][:200]}") from None
    if tok.eos_token_id is None:
        raise FitrainError(f"tokenizer.pretrained '{src}' has no eos_token: the training format ends every "
                           "document and answer with EOS; use a tokenizer with one")
    added: list[str] = []
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        if not cfg.pad_token or cfg.pad_token == tok.eos_token:
            raise FitrainError(f"tokenizer.pretrained '{src}' has no pad token distinct from its EOS "
                               f"{tok.eos_token!r}: set tokenizer.pad_token to another token")
        if cfg.pad_token not in tok.get_vocab():
            added.append(cfg.pad_token)
        tok.add_special_tokens({"pad_token": cfg.pad_token})
    out = Path(cfg.out)
    with atomic_dir(out) as tmp:
        tok.save_pretrained(str(tmp))
        record = {"pretrained": src, "eos_token": tok.eos_token, "pad_token": tok.pad_token,
                  "bos_token": tok.bos_token, "added_tokens": added, "vocab_size": len(tok)}
        (tmp / "fitrain_tokenizer.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def train_tokenizer(cfg: TokenizerConfig) -> Path:
    """Train on ``cfg.files`` and/or ``cfg.input`` and save a transformers tokenizer directory (or, with
    ``pretrained``, save that tokenizer there: :func:`adopt_pretrained`)."""
    if cfg.pretrained:
        return adopt_pretrained(cfg)
    rejects = Rejects()
    return train_tokenizer_from_texts(training_texts(cfg, rejects), cfg, lambda: {
        "fitrain_rejects.json": json.dumps(rejects.to_dict(), indent=2) + "\n"} if rejects.total else {})


def load_tokenizer(path: str | Path) -> Any:
    """Load a tokenizer directory (offline); FitrainError when it is missing or has no EOS token."""
    from transformers import AutoTokenizer

    if not str(path):
        raise FitrainError("no tokenizer given (set `tokenizer` to a tokenizer directory)")
    p = Path(path).expanduser()
    if not p.is_dir() or not ((p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file()):
        raise FitrainError(f"tokenizer not found: '{path}' is not a tokenizer directory "
                           "(train one with `fitrain tokenizer train` or pass a HF tokenizer directory)")
    try:
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as e:
        raise FitrainError(f"cannot load tokenizer from '{path}': {type(e).__name__}: {e}") from None
    if tok.eos_token_id is None:
        raise FitrainError(f"tokenizer '{path}' has no eos_token; fitrain needs one to end documents and answers")
    return tok


def tokenizer_hash(path: str | Path) -> str:
    """A content hash of the tokenizer's files (part of prepare's settings hash; the identity that training
    checks is :func:`tokenizer_identity`, which a re-saved copy keeps)."""
    h = hashlib.sha256()
    p = Path(path)
    for name in sorted(x.name for x in p.iterdir() if x.is_file() and x.suffix in (".json", ".model", ".txt")
                       and not x.name.startswith("fitrain_")):
        h.update(name.encode())
        h.update((p / name).read_bytes())
    return h.hexdigest()[:16]


def tokenizer_identity(tok: Any) -> str:
    """A hash of what maps text to ids -- the vocabulary, merges, normalisation and added tokens (the fast
    tokenizer's canonical JSON, runtime padding/truncation settings left out), the special token ids and the
    chat template -- so a re-saved copy has the same identity and another tokenizer of the same size does
    not."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
    else:  # a slow (e.g. SentencePiece) tokenizer: its vocabulary
        spec = sorted(tok.get_vocab().items())
    specials = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id,
                "chat_template": getattr(tok, "chat_template", None)}
    blob = json.dumps([spec, specials], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def vocab_size_of(tok: Any) -> int:
    """Number of token ids the tokenizer can produce (base vocabulary + added tokens)."""
    return int(len(tok))
