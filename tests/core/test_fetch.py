"""fitrain.core.fetch against a local mirror (a 127.0.0.1 http server, and file:// URLs): the hash verified, a
mismatch refused and nothing kept, a missing file a clear error, the cache reused and repaired."""
import functools
import hashlib
import http.server
import threading

import pytest

from fitrain.core.errors import FitrainError
from fitrain.core.fetch import Source, cached_path, fetch

BODY = b'{"x": 1}\n'
GOOD = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder served over http on 127.0.0.1, and the cache in tmp."""
    root = tmp_path / "mirror"
    (root / "bench" / "sub").mkdir(parents=True)
    (root / "bench" / "sub" / "f.json").write_bytes(BODY)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("FITRAIN_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FITRAIN_DATA_MIRROR", raising=False)
    monkeypatch.delenv("FITRAIN_OFFLINE", raising=False)
    yield root, f"http://127.0.0.1:{srv.server_address[1]}/bench"
    srv.shutdown()
    srv.server_close()


def test_fetched_once_verified_and_reused(mirror):
    root, base = mirror
    src = Source("bench", base, "sub/f.json", GOOD)
    p = fetch(src, "x.path")
    assert p == cached_path(src) and p.read_bytes() == BODY
    (root / "bench" / "sub" / "f.json").unlink()  # the second use never asks the mirror
    assert fetch(src, "x.path").read_bytes() == BODY


def test_a_mismatch_is_refused_and_not_kept(mirror):
    _, base = mirror
    src = Source("bench", base, "sub/f.json", "0" * 64)
    with pytest.raises(FitrainError, match=f"has sha256 {GOOD}, expected 0{{64}}: refused .*set x.path"):
        fetch(src, "x.path")
    assert not cached_path(src).exists() and not list(cached_path(src).parent.iterdir())


def test_a_damaged_cache_entry_is_fetched_again(mirror):
    _, base = mirror
    src = Source("bench", base, "sub/f.json", GOOD)
    cached_path(src).parent.mkdir(parents=True)
    cached_path(src).write_bytes(b"truncated")
    assert fetch(src, "x.path").read_bytes() == BODY


def test_a_missing_file_or_server_is_one_clear_line(mirror, tmp_path):
    _, base = mirror
    with pytest.raises(FitrainError, match=r"bench: cannot fetch http://127.0.0.1:\d+/bench/sub/nope.json "
                                           r"\(HTTP 404 .*\); set x.path to a local copy"):
        fetch(Source("bench", base, "sub/nope.json", GOOD), "x.path")
    with pytest.raises(FitrainError, match="cannot fetch file:.*set x.path") as e:
        fetch(Source("bench", (tmp_path / "nowhere").as_uri(), "f.json", GOOD), "x.path")
    assert "\n" not in str(e.value)


def test_file_urls_the_mirror_setting_and_offline(mirror, monkeypatch):
    root, _ = mirror
    src = Source("bench", "https://example.invalid/never", "sub/f.json", GOOD)
    monkeypatch.setenv("FITRAIN_OFFLINE", "1")
    with pytest.raises(FitrainError, match="not in the cache .* FITRAIN_OFFLINE is set; set x.path to a local copy"):
        fetch(src, "x.path")
    monkeypatch.delenv("FITRAIN_OFFLINE")
    monkeypatch.setenv("FITRAIN_DATA_MIRROR", root.as_uri())  # file:// mirror in the cache's layout
    assert fetch(src, "x.path").read_bytes() == BODY
    monkeypatch.setenv("FITRAIN_OFFLINE", "1")  # cached: offline is fine
    assert fetch(src, "x.path").read_bytes() == BODY
