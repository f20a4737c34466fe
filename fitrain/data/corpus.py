"""The built-in corpus: the documentation every Python installation carries.

Two sources, both read without importing anything (no side effects, no network):

* ``pydoc_data.topics`` -- the language reference topics behind ``help('ASSERTION')`` etc.;
* the standard library's docstrings, read from the source files with :mod:`ast`: per module, the module
  docstring followed by the docstrings of its public top-level classes, functions and methods.

Long texts are split at paragraph boundaries into parts of at most ``max_chars`` characters. Each document
gets a stable id (``topic:ASSERTION``, ``stdlib:json.decoder``, ``stdlib:json.decoder#2`` for a second
part), and the order is a hash of the id, so a ``max_documents`` prefix is a mixed, reproducible sample
and the same Python version always writes byte-identical files. The text is under the PSF licence.
"""
from __future__ import annotations

import ast
import hashlib
import json
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from fitrain.core.checks import NON_NEGATIVE, POSITIVE, check_fields, fail, one_of
from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, write_json

SOURCES = ("topics", "modules")
# Folders of the standard library that are tests, tools or vendored code rather than documentation.
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3",
             "turtledemo", "ensurepip", "config-3", "pydoc_data", "venv", "tkinter", "idlelib"}


@dataclass
class CorpusConfig:
    """Where an experiment's source documents come from.

    ``builtin: true`` writes the Python documentation corpus into the run directory; otherwise ``paths``
    names jsonl/parquet document files (``text`` column, optional ``id_column``).
    """

    builtin: bool = True
    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    paths: list[str] = field(default_factory=list)
    text_column: str = "text"
    id_column: str = "id"
    max_documents: int = 0      # 0 = all
    max_chars: int = 4000       # split longer texts at paragraph boundaries
    min_chars: int = 200        # drop fragments shorter than this (after splitting)

    def __post_init__(self) -> None:
        check_fields(self, sources=one_of(*SOURCES), max_documents=NON_NEGATIVE, min_chars=POSITIVE,
                     max_chars=POSITIVE)
        if self.builtin and not self.sources:
            fail("sources", "is empty: the built-in corpus needs 'topics' and/or 'modules'")
        if not self.builtin and not self.paths:
            fail("paths", "is empty and builtin is false: name jsonl/parquet document files, or set builtin=true for "
                 "the Python documentation corpus")
        if self.max_chars < self.min_chars:
            fail("min_chars", f"({self.min_chars}) must be <= max_chars ({self.max_chars})")


def _split(text: str, max_chars: int) -> list[str]:
    """Paragraph-aligned parts of at most ``max_chars`` (a single longer paragraph is cut at lines, then hard)."""
    parts: list[str] = []
    cur = ""
    for para in text.split("\n\n"):
        pieces = [para] if len(para) <= max_chars else _hard_split(para, max_chars)
        for piece in pieces:
            cand = f"{cur}\n\n{piece}" if cur else piece
            if len(cand) <= max_chars:
                cur = cand
            else:
                if cur:
                    parts.append(cur)
                cur = piece
    if cur:
        parts.append(cur)
    return parts


def _hard_split(para: str, max_chars: int) -> list[str]:
    out, cur = [], ""
    for line in para.split("\n"):
        while len(line) > max_chars:
            out.append(line[:max_chars])
            line = line[max_chars:]
        cand = f"{cur}\n{line}" if cur else line
        if len(cand) <= max_chars:
            cur = cand
        else:
            out.append(cur)
            cur = line
    if cur:
        out.append(cur)
    return out


def _topic_texts() -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"topic:{name}", topics[name].strip()


def _module_doc(path: Path, modname: str) -> str:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    chunks = []
    doc = ast.get_docstring(tree)
    if doc:
        chunks.append(f"Module {modname}\n\n{doc.strip()}")
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            d = ast.get_docstring(node)
            if d:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                chunks.append(f"{modname}.{node.name} ({kind})\n\n{d.strip()}")
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_"):
                        sd = ast.get_docstring(sub)
                        if sd:
                            chunks.append(f"{modname}.{node.name}.{sub.name} (method)\n\n{sd.strip()}")
    return "\n\n".join(chunks)


def _module_texts() -> Iterator[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FitrainError(f"the standard library folder {root} is missing; cannot build the built-in corpus")
    files = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
            continue
        if rel.name.startswith(("test_", "_test")):
            continue
        files.append(rel)
    for rel in sorted(files, key=lambda r: r.as_posix()):
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or any(x.startswith("_") for x in parts):
            continue
        modname = ".".join(parts)
        text = _module_doc(root / rel, modname)
        if text:
            yield f"stdlib:{modname}", text


def iter_builtin_documents(cfg: CorpusConfig) -> Iterator[dict]:
    """Documents ``{"id", "text", "source"}`` in the corpus' stable order (before ``max_documents``)."""
    docs = []
    gens = {"topics": _topic_texts, "modules": _module_texts}
    for src in cfg.sources:
        for base_id, text in gens[src]():
            parts = [t for t in _split(text, cfg.max_chars) if len(t.strip()) >= cfg.min_chars]
            for i, t in enumerate(parts):
                doc_id = base_id if i == 0 else f"{base_id}#{i + 1}"
                docs.append({"id": doc_id, "text": t, "source": src})
    seen = set()
    for d in docs:
        if d["id"] in seen:  # cannot happen by construction; a duplicate id would corrupt the budget
            raise FitrainError(f"built-in corpus: duplicate document id {d['id']}")
        seen.add(d["id"])
    docs.sort(key=lambda d: hashlib.blake2b(d["id"].encode(), digest_size=8).digest())
    yield from docs


def write_builtin_corpus(cfg: CorpusConfig, out_dir: str | Path) -> dict:
    """Write ``documents.jsonl`` and ``stats.json`` under ``out_dir``; returns the stats."""
    if not cfg.builtin:
        raise FitrainError("write_builtin_corpus called with corpus.builtin=false")
    out_dir = Path(out_dir)
    path = out_dir / "documents.jsonl"
    n = chars = 0
    by_source: dict[str, int] = {}
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for d in iter_builtin_documents(cfg):
            if cfg.max_documents and n >= cfg.max_documents:
                break
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
            chars += len(d["text"])
            by_source[d["source"]] = by_source.get(d["source"], 0) + 1
    if n == 0:
        raise FitrainError("the built-in corpus came out empty (check corpus.sources / min_chars)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    stats = {"documents": n, "characters": chars, "by_source": by_source, "path": str(path), "sha256_16": digest,
             "python": sys.version.split()[0], "licence": "PSF (Python documentation and docstrings)"}
    write_json(out_dir / "stats.json", stats)
    return stats


def corpus_paths(cfg: CorpusConfig, out_dir: str | Path) -> list[str]:
    """The document files an experiment reads: the written built-in corpus, or the user's paths."""
    if cfg.builtin:
        return [str(Path(out_dir) / "documents.jsonl")]
    from fitrain.data.records import expand_paths

    return expand_paths(cfg.paths)
