"""`fitrain tokenizer train` and `fitrain prepare` through the real CLI entry point."""
import json

from fitrain.cli import main


def test_tokenizer_train_and_prepare_commands(tmp_path, capsys, corpus_texts, dolly_pairs_file):
    (tmp_path / "corpus.txt").write_text("\n\n".join(corpus_texts[:30]))
    assert main(["tokenizer", "train", f"files=[{tmp_path}/corpus.txt]", "vocab_size=500",
                 f"out={tmp_path}/tok"]) == 0
    assert "vocab 500" in capsys.readouterr().out
    recipe = tmp_path / "prep.yaml"
    recipe.write_text(f"input:\n  paths: ['{dolly_pairs_file}']\ntokenizer: {tmp_path}/tok\n"
                      f"pack:\n  seq_len: 512\nprogress: false\n")
    assert main(["prepare", str(recipe), f"out={tmp_path}/prep", "format.loss_mask=all"]) == 0
    summary = json.loads(capsys.readouterr().out)
    m = json.loads((tmp_path / "prep" / "manifest.json").read_text())
    assert summary["fingerprint"] == m["fingerprint"] and m["format"]["loss_mask"] == "all"
    assert main(["prepare", str(recipe), "--print-config"]) == 0
    assert "seq_len: 512" in capsys.readouterr().out


def test_cli_errors_are_clear(tmp_path, capsys, dolly_pairs_file):
    assert main(["prepare", "pack.seqlen=12"]) == 2
    assert "did you mean 'pack.seq_len'" in capsys.readouterr().err
    assert main(["prepare", "pack.seq_len=long"]) == 2
    assert "pack.seq_len" in capsys.readouterr().err
    assert main(["prepare", f"input.paths=[{dolly_pairs_file}]", f"tokenizer={tmp_path}/missing",
                 f"out={tmp_path}/o"]) == 2
    assert "tokenizer not found" in capsys.readouterr().err
    assert main(["tokenizer", "train", "vocab_sise=10"]) == 2
    assert "did you mean 'vocab_size'" in capsys.readouterr().err
