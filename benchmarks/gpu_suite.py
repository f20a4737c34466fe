"""Everything one GPU can tell about fitrain's training path, in one call (at most 8 minutes on one H100 or
H200, no network), printed as one table:

1. **throughput** of the 1.8b shape (Meta Lingua llama_1B: dim 2048, 25 layers, 16 heads, FFN 5632,
   128,256-token vocabulary) at micro-batch 4 x 4096 on packed documents, bf16, as ``strategy=fsdp`` runs
   it (FSDP2 ``bf16-mixed``: fp32 master weights, bf16 compute, fp32 reduction; fused AdamW, clipping):
   tokens/s/GPU, MFU under both conventions of fitrain.train.flops (``fitrain``: the batch's actual document
   lengths; ``published``: 6N + 12·L·d·T over full rows, as PaLM / Megatron / torchtitan report it) over the
   device's dense bf16 peak (fitrain.train.metrics.PEAK_BF16_FLOPS), and peak memory, for the plain
   and the chunked loss, with and without activation checkpointing, and once with ``compile``;
2. **attention** on packed rows in bf16: isolation (packed logits vs each document alone, judged against
   the leak contrast: a layout whose documents do see each other must differ at least 4x more than any
   path's packed logits differ from the documents alone, and the leak must stand 4x above the bf16 noise
   measured in the same run) and forward+backward speed of the kernel ``model.attention=auto`` picks
   (fitrain.train.attention: flash-attn when installed, else torch's own ``torch_varlen``), packed sdpa, and
   one document per row (padded);
3. **FSDP equality**: a 1-GPU FSDP2 run with grad_accum=2 equals the single-device run (fp32, 3 steps).

    timeout 480 python benchmarks/gpu_suite.py --json out.json   # on a CUDA GPU; out.json grows row by row
    python benchmarks/gpu_suite.py --smoke         # CPU, tiny shapes, seconds (tests/benchmarks runs it)

``--smoke`` runs the ``torch_varlen`` path through a CPU stand-in with torch 2.11's exact ``varlen_attn``
signature (tests/helpers/varlen_kernels.py), the oldest torch the lent GPU machine runs. It needs only
torch, lightning and transformers (no omegaconf, no data pipeline; benchmarks/README.md lists what the GPU
machine lacks); exit 1 if a check fails. Each row is printed, and written to ``--json``, as it finishes, so
a call cut short keeps what it measured.
Published anchors (fitrain/docs/engineering.md): MPT-1B 41.8% MFU on H100; OLMo2-1B 55k tokens/s/GPU.
"""
from __future__ import annotations

import argparse
import gc
import json
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_suite_data import one_document_per_row, packed_rows, to  # noqa: E402  (the suite's batches)


@dataclass
class Plan:
    preset: str = "1.8b"
    vocab: int = 128256
    seq_len: int = 4096
    micro_batch: int = 4
    warmup: int = 3
    steps: int = 6
    mean_doc: int = 700                 # mean packed-document length (log-normal), as in real packed shards
    chunk_tokens: int = 1024
    attn_layers: int = 4                # attention section: the preset's shape with this many layers
    attn_vocab: int = 32000
    eq_preset: str = "60m"              # FSDP equality section
    eq_seq_len: int = 1024
    compile: bool = True
    repeats: int = 3                    # timed forward+backward passes per attention path
    isolation_docs: int = 24            # documents checked one by one against the packed logits
    budget_s: float = 420.0             # stop adding optional rows past this (the whole call must stay < 8 min)


SMOKE = Plan(preset="tiny", vocab=512, seq_len=128, micro_batch=2, warmup=1, steps=2, mean_doc=30, chunk_tokens=64,
             attn_layers=2, attn_vocab=512, eq_preset="tiny", eq_seq_len=64, compile=False, repeats=1,
             isolation_docs=8, budget_s=120.0)


class Suite:
    def __init__(self, plan: Plan, device, json_path: str = "", smoke: bool = False):
        self.plan, self.device, self.json_path, self.smoke = plan, device, json_path, smoke
        self.on_gpu = device.type == "cuda"
        self.rows: list[dict] = []
        self.t0 = time.perf_counter()
        self.failed = False

    def row(self, section: str, config: str, result: str, ok: bool | None = None, **figures) -> None:
        self.rows.append({"section": section, "config": config, "result": result, "ok": ok, **figures})
        if ok is False:
            self.failed = True
        print(f"  [{time.perf_counter() - self.t0:6.1f}s] {section} | {config} | {result} "
              + json.dumps({k: v for k, v in figures.items() if v is not None}), file=sys.stderr, flush=True)
        self.save()

    def save(self) -> None:
        """Rewrite ``--json`` with every row so far (atomically: a cut call leaves the last whole file)."""
        if not self.json_path:
            return
        from fitrain.train.metrics import device_name

        name = device_name() if self.on_gpu else "cpu"
        tmp = Path(self.json_path + ".tmp")
        tmp.write_text(json.dumps({"device": name, "torch": torch.__version__, "smoke": self.smoke,
                                   "wall_s": time.perf_counter() - self.t0, "rows": self.rows}, indent=1))
        tmp.replace(self.json_path)

    def over_budget(self) -> bool:
        return time.perf_counter() - self.t0 > self.plan.budget_s

    def sync(self) -> None:
        if self.on_gpu:
            torch.cuda.synchronize()

    def free(self) -> None:
        gc.collect()
        if self.on_gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if self.on_gpu else None


# ------------------------------------------------------------------------------------------ 1. throughput
def throughput(s: Suite) -> None:
    from fitrain.train.microbatches import count_step, sum_sq_document_lengths
    from fitrain.train.metrics import device_name, peak_flops

    p = s.plan
    batch, _ = packed_rows(p.micro_batch, p.seq_len, p.vocab, p.mean_doc, seed=0)
    tokens, targets = count_step([batch], pad_id=1)
    sum_sq = sum_sq_document_lengths(batch, pad_id=1)
    shape = (tokens, targets, sum_sq, p.micro_batch, p.seq_len)     # fitrain.train.flops.FlopsModel.both
    peak = peak_flops(device_name()) if s.on_gpu else None
    configs = [("plain loss", 0, False, False), ("plain loss + activation ckpt", 0, True, False),
               ("chunked loss", p.chunk_tokens, False, False), ("chunked loss + activation ckpt", p.chunk_tokens, True, False)]
    if p.compile:
        configs.append(("chunked loss + activation ckpt + compile", p.chunk_tokens, True, True))
    attention = varlen_path(s)
    for name, chunk, ac, compile_ in configs:
        label = f"{p.preset} {p.micro_batch}x{p.seq_len} {attention}, {name}"
        if s.over_budget():
            s.row("throughput", label, "skipped: time budget", None)
            continue
        try:
            tps, mfus, loss = _train_steps(s, batch, attention, chunk, ac, compile_, shape, peak)
            s.row("throughput", label, f"loss {loss:.3f}", bool(loss == loss), tokens_per_s_per_gpu=tps,
                  peak_gib=s.peak_gib(), **mfus)
        except Exception as e:                              # an OOM is a result, not a crash
            oom = "out of memory" in str(e).lower() or type(e).__name__ == "OutOfMemoryError"
            s.row("throughput", label, "OOM" if oom else f"error: {type(e).__name__}: {str(e)[:160]}",
                  None if oom else False, peak_gib=s.peak_gib())
        s.free()   # after the except block: a caught exception's frames hold the model


def varlen_path(s: Suite) -> str:
    """The kernel ``model.attention=auto`` picks on this device (fitrain.train.attention.select_attention:
    flash-attn, else torch's varlen kernel, else sdpa); ``--smoke``: torch_varlen through the 2.11 stand-in."""
    from fitrain.train.attention import select_attention

    if s.smoke:
        return "torch_varlen"
    return select_attention("auto", s.device.type)


def _train_steps(s: Suite, batch, attention: str, chunk, ac, compile_, shape, peak):
    from fitrain.train.flops import mfu_both
    from fitrain.train.loss import accumulate_gradients
    from fitrain.train.model import ModelConfig, build_model, flops_model
    from fitrain.train.objective import CausalLMLoss
    from fitrain.train.optim import OptimConfig, build_optimizer
    from fitrain.train.parallel import compile_layers, gradient_sync_off, shard_model
    from fitrain.train.step import step_optimizer

    p, dev = s.plan, s.device
    model = build_model(ModelConfig(preset=p.preset, max_seq_len=p.seq_len, activation_checkpointing=ac),
                        p.vocab, attention, seed=0, verbose=False, device=dev)
    fm = flops_model(model)
    objective = CausalLMLoss(model, chunk)
    if compile_:
        compile_layers(model)
    shard_model(objective, model, s.mesh, torch.bfloat16, activation_checkpointing=ac)
    opt, sched = build_optimizer(model, OptimConfig(warmup_steps=2, fused=s.on_gpu), p.warmup + p.steps)
    b = to(batch, dev)
    tokens, targets = shape[0], shape[1]
    step_flops = fm.both(*shape)

    def step():
        loss = accumulate_gradients(objective, [b], targets, no_sync=lambda: gradient_sync_off(objective))
        step_optimizer(model.parameters(), opt, sched, 1.0)
        return loss

    for _ in range(p.warmup):
        step()
    s.sync()
    t = time.perf_counter()
    for _ in range(p.steps):
        loss = step()
    s.sync()
    dt = (time.perf_counter() - t) / p.steps
    out = tokens / dt, mfu_both(step_flops, dt, peak), float(loss) / targets
    del model, objective, opt, sched, b
    return out


# ------------------------------------------------------------------------------------------ 2. attention
def attention(s: Suite) -> None:
    from fitrain.train.model import ModelConfig, build_model, forward_logits
    from fitrain.train.objective import CausalLMLoss
    from fitrain.train.parallel import keep_rope_fp32

    p, dev = s.plan, s.device
    rows = p.micro_batch
    batch, docs = packed_rows(rows, p.seq_len, p.attn_vocab, p.mean_doc, seed=1)
    dtype = torch.bfloat16
    paths = [path for path in (varlen_path(s), "sdpa") if path != "sdpa"] + ["sdpa"]
    cfg = ModelConfig(preset=p.preset, n_layers=p.attn_layers, max_seq_len=p.seq_len)
    models = {}
    for path in paths:
        models[path] = build_model(cfg, p.attn_vocab, path, seed=0, verbose=False, device=dev).to(dtype).eval()
        keep_rope_fp32(models[path])     # .to(bf16) casts the RoPE buffer too
    b = to(batch, dev)
    with torch.no_grad():
        sdpa = models["sdpa"]
        packed = {path: forward_logits(m, b).float() for path, m in models.items()}
        # bf16 noise floor: the same packed rows one at a time (another kernel layout, the same math)
        one_by_one = torch.cat([forward_logits(sdpa, {k: v[r:r + 1] for k, v in b.items()}) for r in range(rows)])
        floor = float((packed["sdpa"] - one_by_one.float()).abs().max())
        leak = forward_logits(sdpa, {**b, "position_ids": torch.arange(p.seq_len, device=dev).expand(rows, -1)})
        checked = docs[:p.isolation_docs]
        alone = {path: [forward_logits(m, {"input_ids": b["input_ids"][r:r + 1, a:e],
                                           "position_ids": torch.arange(e - a, device=dev)[None]}).float()[0]
                        for r, a, e in checked] for path, m in models.items()}

        def worst(logits, path):
            return max(float((logits[r, a:e] - x).abs().max()) for (r, a, e), x in zip(checked, alone[path]))

        # the contrast first: what a leak looks like here (documents do see each other), well above the noise
        leak_err = worst(leak.float(), "sdpa")
        s.row("attention", "contrast: positions not restarted (documents leak)", f"max |diff| {leak_err:.3g} "
              f"(bf16 floor {floor:.3g})", leak_err > 4 * floor, max_abs_diff=leak_err, floor=floor)
        for path in models:
            err = worst(packed[path], path)
            s.row("attention", f"isolation {path} packed vs each document alone", f"max |diff| {err:.3g} "
                  f"(leak {leak_err:.3g}: {err / max(leak_err, 1e-30):.1%} of it)", err <= leak_err / 4,
                  max_abs_diff=err, leak_fraction=err / max(leak_err, 1e-30))
    del packed, one_by_one, leak
    # speed: forward + backward of the same documents, packed (each path) or one document per row
    real = int((batch["input_ids"] != 1).sum())
    for path, m in models.items():
        s.row("attention", f"speed {path} packed {rows}x{p.seq_len}", "",
              None, tokens_per_s_per_gpu=real / _fwd_bwd_time(s, CausalLMLoss(m.train()), [b], p.repeats))
    longest = max(e - a for _, a, e in docs)
    per_row = one_document_per_row(batch, docs, longest)
    n_rows = per_row["input_ids"].shape[0]
    micro = [to({k: v[i:i + rows] for k, v in per_row.items()}, dev) for i in range(0, n_rows, rows)]
    s.row("attention", f"speed sdpa one document per row ({n_rows} rows x {longest}, padded)", "", None,
          tokens_per_s_per_gpu=real / _fwd_bwd_time(s, CausalLMLoss(models["sdpa"].train()), micro, p.repeats))


def _fwd_bwd_time(s: Suite, objective, micro: list[dict], repeats: int) -> float:
    def once():
        for mb in micro:
            with torch.autocast(s.device.type, dtype=torch.bfloat16):
                loss, _ = objective(mb)
            loss.backward()
        objective.zero_grad(set_to_none=True)

    once()
    s.sync()
    t = time.perf_counter()
    for _ in range(repeats):
        once()
    s.sync()
    return (time.perf_counter() - t) / repeats


# ------------------------------------------------------------------------------------------ 3. FSDP equality
def fsdp_equality(s: Suite) -> None:
    from fitrain.train.loss import accumulate_gradients
    from fitrain.train.model import ModelConfig, build_model
    from fitrain.train.objective import CausalLMLoss
    from fitrain.train.optim import OptimConfig, build_optimizer
    from fitrain.train.parallel import gradient_sync_off, shard_model
    from fitrain.train.step import step_optimizer

    p, dev = s.plan, s.device
    vocab, steps, accum = min(p.vocab, 32000), 3, 2
    micro = [[to(packed_rows(2, p.eq_seq_len, vocab, p.mean_doc, seed=10 * k + m)[0], dev) for m in range(accum)]
             for k in range(steps)]

    def run(fsdp: bool):
        model = build_model(ModelConfig(preset=p.eq_preset, max_seq_len=p.eq_seq_len), vocab, "sdpa", seed=0,
                            verbose=False, device=dev)
        objective = CausalLMLoss(model, p.chunk_tokens)
        if fsdp:
            shard_model(objective, model, s.mesh, None, activation_checkpointing=False)
        opt, sched = build_optimizer(model, OptimConfig(lr=1e-3, warmup_steps=1), steps)
        trace = []
        for mbs in micro:
            count = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in mbs)
            loss = accumulate_gradients(objective, mbs, count,
                                        no_sync=(lambda: gradient_sync_off(objective)) if fsdp else None)
            norm = step_optimizer(model.parameters(), opt, sched, 1.0)
            trace.append((float(loss) / count, float(norm)))
        weights = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().float().cpu()
                   for k, v in model.state_dict().items()}
        return trace, weights

    (ta, wa), (tb, wb) = run(False), run(True)
    rel = max(float((wa[k] - wb[k]).norm() / wa[k].norm().clamp_min(1e-30)) for k in wa)
    loss_rel = max(abs(a[0] - b[0]) / abs(a[0]) for a, b in zip(ta, tb))
    s.row("fsdp", f"1-device FSDP2 vs single device, {p.eq_preset}, grad_accum={accum}, {steps} steps, fp32",
          f"weights max rel diff {rel:.2g}, loss rel diff {loss_rel:.2g}", rel <= 1e-5 and loss_rel <= 1e-5,
          weights_rel_diff=rel, loss_rel_diff=loss_rel)


# ------------------------------------------------------------------------------------------ main
def _init_process_group(device) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=0, world_size=1)


def table(rows: list[dict]) -> str:
    def f(v, fmt):
        return "" if v is None else fmt.format(v)

    head = (f"{'section':<10} {'configuration':<62} {'tok/s/GPU':>10} {'MFU fi':>6} {'MFU pub':>7} {'peak GiB':>8}  "
            f"{'check':<5} result")
    lines = [head, "-" * len(head)]
    for r in rows:
        check = {True: "ok", False: "FAIL", None: ""}[r["ok"]]
        lines.append(f"{r['section']:<10} {r['config'][:62]:<62} {f(r.get('tokens_per_s_per_gpu'), '{:,.0f}'):>10} "
                     f"{f(r.get('mfu_fitrain'), '{:.1%}'):>6} {f(r.get('mfu_published'), '{:.1%}'):>7} "
                     f"{f(r.get('peak_gib'), '{:.1f}'):>8}  {check:<5} {r['result']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes (seconds)")
    ap.add_argument("--json", default="", help="also write the rows to this file")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)

    plan = SMOKE if args.smoke else Plan()
    if args.no_compile:
        plan.compile = False
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_suite.py: no CUDA GPU here; run with --smoke for the CPU check of the script", file=sys.stderr)
        return 2
    device = torch.device("cuda" if not args.smoke else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(0)
    _init_process_group(device)
    from torch.distributed.device_mesh import init_device_mesh

    if args.smoke:   # the oldest varlen_attn signature the lent GPU machine has (torch 2.11), on CPU
        from tests.helpers import varlen_kernels

        varlen_kernels.install(None, "2.11")
    suite = Suite(plan, device, args.json, args.smoke)
    suite.mesh = init_device_mesh(device.type, (1,))
    from fitrain.train.metrics import device_name, peak_flops

    name = device_name() if device.type == "cuda" else "cpu"
    print(f"gpu_suite: device {name} (dense bf16 peak {peak_flops(name) or 'unknown'}), torch {torch.__version__}, "
          f"{'smoke (tiny shapes)' if args.smoke else 'full'}", file=sys.stderr, flush=True)
    for section in (fsdp_equality, attention, throughput):   # the cheap checks first
        try:
            section(suite)
        except Exception as e:
            suite.row(section.__name__, "section failed", f"{type(e).__name__}: {str(e)[:200]}", False)
        suite.free()
    dist.destroy_process_group()
    print(f"device: {name}; torch {torch.__version__}; wall {time.perf_counter() - suite.t0:.0f} s")
    print(table(suite.rows))
    suite.save()
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
