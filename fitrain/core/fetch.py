"""Fetch a pinned file once into a cache and verify its sha256 (the benchmark data sources of
fitrain_eval.data_sources; README "Benchmark data").

A file is named by its URL (``https://``, ``http://`` or ``file://``) and its sha256. :func:`fetch` returns the
cached copy when its hash is right, else downloads it to a temporary file beside the cache entry, checks the
hash and only then moves it into place: a mismatch is refused and nothing is kept, so a corrupted or changed
upstream file never reaches an evaluation. ``FITRAIN_DATA_CACHE`` sets the cache (default
``~/.cache/fitrain/data``); ``FITRAIN_DATA_MIRROR`` replaces every source's base URL (a local mirror or an
offline copy served over http or file://); ``FITRAIN_OFFLINE=1`` never downloads.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fitrain.core.errors import FitrainError

CACHE_ENV, MIRROR_ENV, OFFLINE_ENV = "FITRAIN_DATA_CACHE", "FITRAIN_DATA_MIRROR", "FITRAIN_OFFLINE"


@dataclass(frozen=True)
class Source:
    """One pinned file: ``base`` + ``/`` + ``rel`` is its official URL; ``rel`` is also its path in the cache
    (under the cache's ``name`` folder) and in a mirror."""

    name: str    # the data set's folder in the cache, e.g. "mixeval"
    base: str    # official base URL at a pinned revision
    rel: str     # path below base (and below the cache folder)
    sha256: str

    def url(self) -> str:
        mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
        return f"{mirror}/{self.name}/{self.rel}" if mirror else f"{self.base.rstrip('/')}/{self.rel}"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fitrain" / "data")


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_path(src: Source) -> Path:
    return cache_dir() / src.name / src.rel


def fetch(src: Source, setting: str) -> Path:
    """The verified local copy of ``src`` (downloaded on first use). Errors name ``setting`` (the recipe key a
    user sets to a local copy instead)."""
    dest = cached_path(src)
    if dest.is_file():
        if sha256_of(dest) == src.sha256:
            return dest
        dest.unlink()  # a stale or damaged cache entry: fetched again below
    url = src.url()
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise FitrainError(f"{src.name}: {src.rel} is not in the cache {cache_dir()} and {OFFLINE_ENV} is set; "
                           f"set {setting} to a local copy, or run `fitrain eval fetch` where {url} is reachable")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = (f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError)
                      else getattr(e, "reason", None) or e)
            raise FitrainError(f"{src.name}: cannot fetch {url} ({reason}); set {setting} to a local copy "
                               f"(sha256 {src.sha256}) or {MIRROR_ENV} to a mirror") from None
        got = sha256_of(tmp)
        if got != src.sha256:
            raise FitrainError(f"{src.name}: {url} has sha256 {got}, expected {src.sha256}: refused (not kept); "
                               f"set {setting} to a verified local copy")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
