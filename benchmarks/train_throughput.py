"""`fitrain train` tokens/s as a ratio to a bare PyTorch loop with the same model, batch and data, measured
in the same run (aim >= 0.95).

    .venv/bin/python benchmarks/train_throughput.py [--steps 16] [--skip 4] [--repeats 2] [--seq-len 512]
        [--precision auto|32-true|bf16-mixed]

Data: the pydoc topics (real English text) as documents, a 1000-token BPE, `fitrain.data.prepare` into rows of
--seq-len. Model: a ~5M-parameter Llama (dim 256, 4 layers, 8 heads, untied) at batch 8 x seq-len on CPU, in
the default precision (``auto``: bf16-mixed on a CPU with AMX / AVX512-BF16, else fp32; the bare loop uses
what fitrain resolved it to). Both sides read the same PackedLoader batches (same seed),
compute the same loss (sum CE / supervised targets), clip, step AdamW and the schedule. The rate is tokens
(non-padding) over wall time from the end of step --skip to the end of the last step (so Fabric's
start-up and the first steps are outside it), and also from the median step time (whole step cycles,
fitrain's loop included), which is robust to bursts of other load. The two are run alternately
--repeats times; ratios of medians are printed. Other processes on the machine make timings noisy.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def make_data(tmp: Path, seq_len: int) -> tuple[Path, Path]:
    import json

    from pydoc_data.topics import topics

    from fitrain.data.prepare import PrepareConfig, prepare
    from fitrain.data.records import InputConfig
    from fitrain.data.tokenizer import TokenizerConfig, train_tokenizer_from_texts

    texts = [topics[k] for k in sorted(topics)]
    tok = train_tokenizer_from_texts(texts, TokenizerConfig(out=str(tmp / "tok"), vocab_size=1000))
    docs = tmp / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    cfg = PrepareConfig(input=InputConfig(paths=[str(docs)], kind="documents"), tokenizer=str(tok),
                        out=str(tmp / "prepared"), progress=False)
    cfg.pack.seq_len = seq_len
    prepare(cfg)
    return tmp / "prepared", tok


def fitrain_config(run_dir: Path, data: Path, steps: int, precision: str):
    from fitrain.train.config import TrainConfig

    cfg = TrainConfig(run_dir=str(run_dir), max_steps=steps, log_every=1, checkpoint_every=0, progress_bar=False,
                      export_hf=False, precision=precision, accelerator="cpu", devices=1, resume="never")
    cfg.model.preset, cfg.model.dim, cfg.model.n_layers = "tiny", 256, 4
    cfg.model.n_heads, cfg.model.n_kv_heads, cfg.model.ffn_dim, cfg.model.tie_embeddings = 8, 8, 688, False
    cfg.data.path, cfg.data.micro_batch_size, cfg.data.grad_accum, cfg.data.max_epochs = str(data), 8, 1, 0
    cfg.optim.warmup_steps = 2
    cfg.wandb.mode = "disabled"
    return cfg


def run_fitrain(cfg, skip: int) -> tuple[float, float]:
    """(tokens/s over the timed window, median tokens per step / median step time)."""
    from fitrain.core.layout import TrainDir
    from fitrain.train.metrics import read_metrics
    from fitrain.train.trainer import train

    train(cfg)
    rows = [r for r in read_metrics(TrainDir.of(cfg.run_dir).metrics_csv) if r["loss"] is not None]
    a, b = rows[skip - 1], rows[-1]
    window = (b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])
    # elapsed_s is taken after each step's hooks, so its differences are whole step cycles (loop included)
    steps = [(r["tokens"] - p["tokens"], r["elapsed_s"] - p["elapsed_s"]) for p, r in zip(rows[skip - 1:], rows[skip:])]
    return window, statistics.median(t for t, _ in steps) / statistics.median(d for _, d in steps)


def run_bare(cfg, skip: int) -> tuple[float, float]:
    """The same step by hand: no Fabric, no hooks, no logging."""
    import torch

    from fitrain.data.loader import IGNORE_INDEX, PackedLoader
    from fitrain.data.manifest import Manifest
    from fitrain.data.tokenizer import load_tokenizer
    from fitrain.train.loss import sum_cross_entropy
    from fitrain.train.model import build_model, forward_logits
    from fitrain.train.optim import build_optimizer

    tok = load_tokenizer(cfg.tokenizer or Manifest.read(cfg.data.path, "data").tokenizer.path)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, len(tok), "sdpa", seed=cfg.seed, verbose=False)
    opt, sched = build_optimizer(model, cfg.optim, cfg.max_steps)
    loader = PackedLoader(cfg.data.path, cfg.data.micro_batch_size, seed=cfg.seed, rank=0, world_size=1)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16-mixed")
    tokens, t_skip, tok_skip = 0, None, 0
    steps: list[tuple[int, float]] = []
    it = loader.iter_epochs(None)
    t_prev = time.perf_counter()
    for step in range(1, cfg.max_steps + 1):
        batch = next(it)
        n_sup = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        with autocast:
            loss_sum, _ = sum_cross_entropy(forward_logits(model, batch), batch["labels"])
        (loss_sum / n_sup).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        float(loss_sum)
        n = int((batch["input_ids"] != tok.pad_token_id).sum())
        tokens += n
        now = time.perf_counter()
        if step > skip:
            steps.append((n, now - t_prev))
        t_prev = now
        if step == skip:
            t_skip, tok_skip = now, tokens
    window = (tokens - tok_skip) / (time.perf_counter() - t_skip)
    return window, statistics.median(t for t, _ in steps) / statistics.median(d for _, d in steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--skip", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--precision", default="auto", choices=["auto", "32-true", "bf16-mixed"])
    args = ap.parse_args()
    import os

    from fitrain.train.distributed import resolve_precision

    chosen = resolve_precision(args.precision, on_gpu=False, strategy="single")
    print(f"precision {chosen.name} ({chosen.reason})", flush=True)

    os.environ.setdefault("WANDB_MODE", "disabled")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data, _ = make_data(tmp, args.seq_len)
        fit, bare = [], []
        for i in range(args.repeats):
            # the bare loop runs what fitrain resolves the requested precision to
            bare.append(run_bare(fitrain_config(tmp / f"bare{i}", data, args.steps, chosen.name), args.skip))
            fit.append(run_fitrain(fitrain_config(tmp / f"fit{i}", data, args.steps, args.precision), args.skip))
            print(f"repeat {i + 1}: bare loop {bare[-1][0]:.0f} tok/s (median step {bare[-1][1]:.0f}), "
                  f"fitrain train {fit[-1][0]:.0f} tok/s (median step {fit[-1][1]:.0f})", flush=True)
    bw, fw = statistics.median(b[0] for b in bare), statistics.median(f[0] for f in fit)
    bm, fm = statistics.median(b[1] for b in bare), statistics.median(f[1] for f in fit)
    print(f"model ~5M params (dim 256, 4 layers), batch 8 x {args.seq_len}, {chosen.name}, CPU; steps "
          f"{args.skip + 1}..{args.steps} timed, {args.repeats} alternating repeats")
    print(f"bare PyTorch loop: {bw:.0f} tokens/s over the window, {bm:.0f} from median step times")
    print(f"fitrain train:     {fw:.0f} tokens/s over the window, {fm:.0f} from median step times")
    print(f"ratio fitrain/bare (median step times, robust to bursts of other load): {fm / bm:.3f} (aim >= 0.95)")
    print(f"ratio fitrain/bare (whole window):                                  {fw / bw:.3f}")
    bb, fb = max(b[1] for b in bare), max(f[1] for f in fit)
    print(f"best repeat (least disturbed): bare {bb:.0f}, fitrain {fb:.0f} tokens/s; ratio {fb / bb:.3f}")


if __name__ == "__main__":
    main()
