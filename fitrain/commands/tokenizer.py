"""fitrain tokenizer train: a small byte-level BPE for CPU experiments, or a pretrained tokenizer taken as is."""
from __future__ import annotations

import argparse

HELP = "train a byte-level BPE tokenizer (for CPU experiments), or take a pretrained one"
DESCRIPTION = """\
Train a byte-level BPE with the `tokenizers` library on text files/globs (`files`) and/or records
(`input.paths`: raw documents, or pair files whose documents, instructions and answers are all used),
and save a transformers tokenizer directory (eos <|endoftext|>, pad <|pad|>, optional BOS) that
`AutoTokenizer.from_pretrained(dir)` loads offline. With `pretrained=` (an HF tokenizer directory or hub
id) that tokenizer is saved to `out` instead, with a pad token distinct from EOS (`pad_token`: an existing
token, or added) and fitrain_tokenizer.json recording what was done.

example:
  fitrain tokenizer train files=[corpus/*.txt] vocab_size=8192 out=runs/tok
  fitrain tokenizer train input.paths=[data/fi/*.parquet] vocab_size=4096 out=runs/tok
  fitrain tokenizer train pretrained=meta-llama/Meta-Llama-3-8B 'pad_token="<|reserved_special_token_0|>"' out=runs/tok
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fitrain.commands.common import add_recipe_arguments

    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a BPE tokenizer", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(t, example="vocab_size=4096")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a tokenizer trained with other settings at `out` (refused otherwise)")


def run(args: argparse.Namespace) -> int:
    from fitrain.commands.common import load
    from fitrain.data.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer

    cfg = load(args, TokenizerConfig)
    if cfg is None:
        return 0
    cfg.overwrite = cfg.overwrite or args.overwrite
    out = train_tokenizer(cfg)
    tok = load_tokenizer(out)
    print(f"tokenizer written to {out} (vocab {len(tok)}, eos {tok.eos_token!r}, pad {tok.pad_token!r})")
    return 0
