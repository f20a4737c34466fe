"""Training tokens/s per GPU and MFU for the 1.8b preset shape (Meta Lingua llama_1B: dim 2048, 25 layers,
16 heads, FFN 5632, 128,256-token vocabulary), on one GPU. Run it when a GPU is lent:

    python benchmarks/gpu_throughput_mfu.py [--seq-len 4096] [--micro-batch 2] [--steps 12] [--skip 4]
                                            [--attention auto] [--compile] [--activation-checkpointing]

It runs fitrain's own step (fitrain.train.loss.accumulate_gradients: exact normalisation, sum CE in fp32),
bf16 autocast, fused AdamW and clipping on packed synthetic rows (documents of random lengths with
per-document position ids, so flash-attn varlen / sdpa see real packing). Reference in the same run: the
device's peak dense bf16 FLOP/s (fitrain.train.metrics.PEAK_BF16_FLOPS); MFU = tokens/s x FLOPs/token / peak,
with FLOPs/token = 6 x non-embedding params + 6 x vocab x dim + 12 x layers x dim x seq_len. Published
anchors (fitrain/docs/engineering.md): OLMo2-1B ~55k tok/s/GPU on H100; MPT-1B 41.8% MFU.
"""
from __future__ import annotations

import argparse
import time


def packed_batch(rows: int, seq_len: int, vocab: int, device, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (rows, seq_len), generator=g)
    pos = torch.zeros((rows, seq_len), dtype=torch.long)
    labels = ids.clone()
    for r in range(rows):
        t = 0
        while t < seq_len:
            n = min(int(torch.randint(256, 2048, (1,), generator=g)), seq_len - t)
            pos[r, t:t + n] = torch.arange(n)
            labels[r, t] = -100
            t += n
    return {k: v.to(device) for k, v in {"input_ids": ids, "labels": labels, "position_ids": pos}.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="1.8b")
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--skip", type=int, default=4)
    ap.add_argument("--attention", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--activation-checkpointing", action="store_true")
    args = ap.parse_args()

    import torch

    from fitrain.train.metrics import peak_flops
    from fitrain.train.model import ModelConfig, build_model, count_parameters, flops_per_token, forward_logits, \
        select_attention
    from fitrain.train.loss import accumulate_gradients
    from fitrain.train.optim import OptimConfig, build_optimizer, grad_norm_and_clip

    if not torch.cuda.is_available():
        raise SystemExit("gpu_throughput_mfu.py needs a CUDA GPU")
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    attention = select_attention(args.attention, "cuda")
    mcfg = ModelConfig(preset=args.preset, max_seq_len=args.seq_len,
                       activation_checkpointing=args.activation_checkpointing)
    model = build_model(mcfg, args.vocab, attention, seed=0).to(dev)
    model.train()
    fwd = torch.compile(model) if args.compile else model
    opt, sched = build_optimizer(model, OptimConfig(warmup_steps=2, fused=True), args.steps)
    micro = [packed_batch(args.micro_batch, args.seq_len, args.vocab, dev, seed=i) for i in range(args.grad_accum)]
    count = sum(int((m["labels"][:, 1:] != -100).sum()) for m in micro)
    tokens_per_step = args.micro_batch * args.seq_len * args.grad_accum

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = accumulate_gradients(lambda b: forward_logits(fwd, b), micro, count)
        grad_norm_and_clip(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        return loss

    for _ in range(args.skip):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps - args.skip):
        loss = step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tps = tokens_per_step * (args.steps - args.skip) / dt
    fpt = flops_per_token(model, args.seq_len)
    peak = peak_flops(name)
    total, emb = count_parameters(model)
    print(f"device: {name}; attention: {attention}; compile: {args.compile}; activation checkpointing: "
          f"{args.activation_checkpointing}")
    print(f"model {args.preset}: {total / 1e9:.3f}B params ({(total - emb) / 1e9:.3f}B non-embedding), "
          f"seq {args.seq_len}, micro-batch {args.micro_batch} x accum {args.grad_accum}")
    print(f"loss {float(loss) / count:.4f}; peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"tokens/s/GPU: {tps:.0f}")
    if peak:
        print(f"MFU: {tps * fpt / peak:.3f} (FLOPs/token {fpt / 1e9:.2f} G, peak {peak / 1e12:.0f} TFLOP/s bf16)")
    else:
        print(f"MFU: unknown peak for '{name}' (add it to fitrain.train.metrics.PEAK_BF16_FLOPS)")


if __name__ == "__main__":
    main()
