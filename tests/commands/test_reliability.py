"""Issue 23's CLI cases owned here: a finished output of another configuration is never replaced unasked
(fitrain.core.overwrite), a manifest without its checksum is refused (or rebuilt by prepare, saying so),
and prepared files follow the umask. Each failure is exit 2, one line naming the thing, no traceback."""
import json
import os
import stat

import pytest

from fitrain.core.overwrite import differences
from tests.helpers.cli import assert_clean_error, run_main


def _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, *extra):
    return run_main(["prepare", f"input.paths=[{dolly_pairs_file}]", f"tokenizer={tokenizer_dir}",
                     f"out={tmp_path}/prep", "progress=false", *extra], capsys)


def test_prepare_refuses_a_finished_directory_of_another_seq_len_until_overwrite(
        tmp_path, capsys, tokenizer_dir, dolly_pairs_file):
    assert _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=128").rc == 0
    before = (tmp_path / "prep" / "manifest.json").read_bytes()
    r = _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=256")
    assert_clean_error(r, f"{tmp_path}/prep", "pack.seq_len: 128 -> 256", "--overwrite")
    assert (tmp_path / "prep" / "manifest.json").read_bytes() == before  # nothing touched
    r = _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=128")  # same config: reused
    assert r.rc == 0 and (tmp_path / "prep" / "manifest.json").read_bytes() == before
    r = _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=256", "--overwrite")
    assert r.rc == 0 and json.loads((tmp_path / "prep" / "manifest.json").read_text())["seq_len"] == 256


def test_prepare_names_a_changed_format_and_the_overwrite_key_works_too(tmp_path, capsys, tokenizer_dir,
                                                                         dolly_pairs_file):
    assert _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=128").rc == 0
    r = _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=128", "format.loss_mask=all")
    assert_clean_error(r, "format.loss_mask: 'response' -> 'all'")
    r = _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=128", "format.loss_mask=all",
              "overwrite=true")
    assert r.rc == 0


def test_prepare_rebuilds_a_manifest_without_its_checksum_and_says_so(tmp_path, capsys, tokenizer_dir,
                                                                      dolly_pairs_file):
    assert _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=128").rc == 0
    path = tmp_path / "prep" / "manifest.json"
    m = json.loads(path.read_text())
    good = m["counts"]["total_tokens"]
    m.pop("checksum")
    m["counts"]["total_tokens"] = good + 2651
    path.write_text(json.dumps(m))
    r = run_main(["verify", tmp_path / "prep"], capsys)
    assert r.rc != 0 and "has no checksum" in r.out + r.err
    r = _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=128")
    assert r.rc == 0 and "rebuilding" in r.err and "has no checksum" in r.err
    m = json.loads(path.read_text())
    assert m["checksum"] and m["counts"]["total_tokens"] == good


def test_budget_from_a_manifest_without_checksum_is_refused(tmp_path, capsys, tokenizer_dir, dolly_pairs_file):
    assert _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=128").rc == 0
    path = tmp_path / "prep" / "manifest.json"
    m = json.loads(path.read_text())
    m.pop("checksum")
    path.write_text(json.dumps(m))
    r = run_main(["prepare", f"input.paths=[{dolly_pairs_file}]", f"tokenizer={tokenizer_dir}",
                  f"out={tmp_path}/std", "progress=false", "documents_from_pairs=true",
                  f"budget_from={tmp_path}/prep"], capsys)
    assert_clean_error(r, "budget_from", "has no checksum")


def test_prepared_files_follow_the_umask(tmp_path, capsys, tokenizer_dir, dolly_pairs_file):
    old = os.umask(0o022)
    try:
        assert _prep(tmp_path, capsys, tokenizer_dir, dolly_pairs_file, "pack.seq_len=128").rc == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "prep").iterdir() if p.is_file()}
    assert modes["manifest.json"] == 0o644 and all(m == 0o644 for m in modes.values()), modes
    assert stat.S_IMODE((tmp_path / "prep").stat().st_mode) == 0o755


@pytest.mark.parametrize("old,new,text", [
    ({"a": {"b": 1}}, {"a": {"b": 2}}, "a.b: 1 -> 2"),
    ({"a": 1}, {"a": 1, "c": [1]}, "c: '<unset>' -> [1]"),
    ({f"k{i}": i for i in range(6)}, {f"k{i}": -i - 1 for i in range(6)}, "and 2 more"),
    ({"a": 1}, {"a": 1}, ""),
])
def test_differences_name_each_changed_key(old, new, text):
    assert (text in differences(old, new)) if text else differences(old, new) == ""


def test_tokenizer_train_refuses_to_replace_one_of_other_settings(tmp_path, capsys, corpus_texts):
    (tmp_path / "c.txt").write_text("\n\n".join(corpus_texts[:20]))
    argv = ["tokenizer", "train", f"files=[{tmp_path}/c.txt]", f"out={tmp_path}/tok"]
    assert run_main(argv + ["vocab_size=300"], capsys).rc == 0
    before = (tmp_path / "tok" / "tokenizer.json").read_bytes()
    assert_clean_error(run_main(argv + ["vocab_size=400"], capsys), f"{tmp_path}/tok", "vocab_size: 300 -> 400",
                       "--overwrite")
    assert (tmp_path / "tok" / "tokenizer.json").read_bytes() == before
    assert run_main(argv + ["vocab_size=300"], capsys).rc == 0  # the same settings: retrained in place
    assert run_main(argv + ["vocab_size=400", "--overwrite"], capsys).rc == 0
    assert json.loads((tmp_path / "tok" / "fitrain_tokenizer.json").read_text())["vocab_size"] == 400


def test_tokenizer_train_refuses_a_directory_holding_a_foreign_tokenizer(tmp_path, capsys, corpus_texts,
                                                                           tokenizer_dir):
    import shutil

    shutil.copytree(tokenizer_dir, tmp_path / "tok")
    (tmp_path / "tok" / "fitrain_tokenizer.json").unlink(missing_ok=True)
    (tmp_path / "c.txt").write_text("\n\n".join(corpus_texts[:20]))
    r = run_main(["tokenizer", "train", f"files=[{tmp_path}/c.txt]", f"out={tmp_path}/tok", "vocab_size=300"], capsys)
    assert_clean_error(r, "settings were not recorded", "--overwrite")
