"""On a GPU with flash-attn: packed logits through flash_attention_2 varlen (cu_seq_lens/max_length passed
explicitly by fitrain.train.model.forward_logits) equal (a) the sdpa packed logits of the same weights and
(b) each document run alone; and a leak check: the same packed rows with *no* varlen kwargs and batch > 1
(what transformers does when they are not passed) are printed for contrast.

    python benchmarks/flash_varlen_equality.py [--preset tiny] [--rows 4] [--seq-len 1024]

Prints the max absolute logit difference of each comparison against the bf16 noise floor measured in the
same run (sdpa vs sdpa in a different batch layout), and exits 1 if flash differs from per-document
logits by more than 4x that floor.
"""
from __future__ import annotations

import argparse
import sys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=1024)
    args = ap.parse_args()

    import torch
    from transformers.utils import is_flash_attn_2_available

    from fitrain.train.model import ModelConfig, build_model, forward_logits

    if not (torch.cuda.is_available() and is_flash_attn_2_available()):
        raise SystemExit("needs a CUDA GPU and the flash-attn package")
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from gpu_throughput_mfu import packed_batch

    dev = torch.device("cuda")
    cfg = ModelConfig(preset=args.preset, max_seq_len=args.seq_len)
    flash = build_model(cfg, args.vocab, "flash_attention_2", seed=0).to(dev, torch.bfloat16).eval()
    sdpa = build_model(cfg, args.vocab, "sdpa", seed=0).to(dev, torch.bfloat16).eval()
    sdpa.load_state_dict(flash.state_dict())
    batch = packed_batch(args.rows, args.seq_len, args.vocab, dev)
    with torch.no_grad():
        lf = forward_logits(flash, batch).float()
        ls = forward_logits(sdpa, batch).float()
        # noise floor: sdpa on one row at a time (a different kernel layout, same math)
        ls1 = torch.cat([forward_logits(sdpa, {k: v[r:r + 1] for k, v in batch.items()}) for r in range(args.rows)]).float()
        alone_diff = 0.0
        for r in range(args.rows):
            pos = batch["position_ids"][r].tolist()
            starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
            for s, e in zip(starts[:-1], starts[1:]):
                one = {"input_ids": batch["input_ids"][r:r + 1, s:e], "position_ids": batch["position_ids"][r:r + 1, s:e]}
                alone = forward_logits(flash, one).float()[0]
                alone_diff = max(alone_diff, float((lf[r, s:e] - alone).abs().max()))
        leaky = flash(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits.float()
    floor = float((ls - ls1).abs().max())
    print(f"bf16 noise floor (sdpa batched vs row by row): {floor:.4g}")
    print(f"flash varlen vs sdpa packed:                   {float((lf - ls).abs().max()):.4g}")
    print(f"flash varlen packed vs each document alone:    {alone_diff:.4g}")
    print(f"flash without varlen kwargs (batch {args.rows}) vs varlen: {float((leaky - lf).abs().max()):.4g}")
    ok = alone_diff <= 4 * max(floor, 1e-2)
    print("OK: packed flash-attn logits equal per-document logits" if ok else "FAIL: documents leak")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
