"""Memory of gradient accumulation under FSDP2, per rank, for ``fsdp.accumulate`` = ``unsharded`` (full fp32
gradients kept between micro-batches, reduced on the last) and ``sharded`` (reduce-scattered after every
micro-batch). CPU-measured: 2 gloo ranks (torchrun), each builds the model on the meta device, shards it
per decoder layer (fitrain.train.parallel.shard_model), materialises its shards, then runs one optimizer
step's micro-batches through fitrain.train.loss.accumulate_gradients with fitrain.train.parallel's
``accumulation_sync``.

    .venv/bin/python benchmarks/accum_memory.py                        # 150m, grad_accum 4, 2 ranks
    .venv/bin/python benchmarks/accum_memory.py --preset 300m --world 2

Per rank (the larger of the ranks): ``grads between`` -- the gradient storage held between micro-batches,
counted from the tensors themselves (FSDP2's unsharded gradients kept under no-sync, plus the sharded
gradients), the largest before any micro-batch's forward; ``grads after`` -- after the last micro-batch
(what the optimizer sees: the shards); ``peak RSS added`` -- the peak resident set while accumulating (VmHWM,
reset through /proc/self/clear_refs once the shards are materialised; glibc told to return freed blocks of
128 KiB and up) minus the resident set before: activations (the same in both modes) plus the gradients. The
expectation: ``unsharded`` holds 4 bytes x the parameters between micro-batches, ``sharded`` 4 bytes x
parameters / ranks.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # the checkout, installed or not

CASE = r"""
import contextlib, json, os, sys
import torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from fitrain.train.init import materialize
from fitrain.train.loss import accumulate_gradients
from fitrain.train.model import ModelConfig, build_model, count_parameters
from fitrain.train.objective import CausalLMLoss
from fitrain.train.parallel import accumulation_sync, gradient_sync_off, shard_model

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

class Fabric:   # what accumulation_sync asks of Fabric: its no_backward_sync (FSDP2: gradient sync off)
    no_backward_sync = staticmethod(gradient_sync_off)

preset, mode, vocab, accum, seq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
dist.init_process_group("gloo")
torch.manual_seed(dist.get_rank())
lm = build_model(ModelConfig(preset=preset, max_seq_len=seq), vocab, "sdpa", seed=0, verbose=False, device="meta")
objective = CausalLMLoss(lm)
shard_model(objective, lm, init_device_mesh("cpu", (dist.get_world_size(),)), None, False)
materialize(lm, "cpu", 0)
def grad_bytes():   # gradient storage on this rank: FSDP2's unsharded (kept under no-sync) + the sharded grads
    total = 0
    for m in objective.modules():
        state = m._get_fsdp_state() if hasattr(m, "_get_fsdp_state") else None
        for group in (state._fsdp_param_groups if state is not None else []):
            for fp in group.fsdp_params:
                for t in (fp._unsharded_param.grad if hasattr(fp, "_unsharded_param") else None,
                          fp.unsharded_accumulated_grad, fp.sharded_param.grad):
                    if t is not None:
                        t = t.to_local() if hasattr(t, "to_local") else t
                        total += t.numel() * t.element_size()
    return total

kept = []
def loss_of(batch):   # before each micro-batch's forward: what the earlier ones left
    kept.append(grad_bytes())
    return objective(batch)

ids = torch.randint(2, vocab, (accum, 1, seq))
batches = [{"input_ids": x, "labels": x, "position_ids": torch.arange(seq)[None]} for x in ids]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                                  # reset the high-water mark: what the step adds
base = status("VmRSS")
accumulate_gradients(loss_of, batches, accum * seq * dist.get_world_size(), dist.get_world_size(),
                     no_sync=accumulation_sync(Fabric, objective, mode))
out = {"peak": status("VmHWM") - base, "params": count_parameters(lm)[0], "between": max(kept),
       "after": grad_bytes()}
rows = [None] * dist.get_world_size()
dist.all_gather_object(rows, out)
if dist.get_rank() == 0:
    print(json.dumps(rows))
dist.destroy_process_group()
"""


def measure(preset: str, mode: str, world: int, vocab: int, accum: int, seq: int) -> list[dict]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}",
                        f"--master_port={port}", "--no-python", sys.executable, "-c", CASE,
                        preset, mode, str(vocab), str(accum), str(seq)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
                            "MALLOC_MMAP_THRESHOLD_": str(1 << 17)}, cwd=REPO)   # freed blocks leave the RSS
    if r.returncode != 0:
        raise SystemExit(f"accum_memory.py: {preset} {mode} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="150m")
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    args = ap.parse_args(argv)
    mib = 2**20
    print(f"CPU-measured, {args.world} gloo ranks, preset {args.preset}, vocab {args.vocab}, grad_accum "
          f"{args.grad_accum} x 1 row x {args.seq_len}: per rank (max over ranks)")
    print(f"{'accumulate':<11} {'params':>8} {'4 x params':>11} {'grads between':>14} {'grads after':>12} "
          f"{'peak RSS added':>15}")
    for mode in ("unsharded", "sharded"):
        rows = measure(args.preset, mode, args.world, args.vocab, args.grad_accum, args.seq_len)
        n = rows[0]["params"]
        print(f"{mode:<11} {n / 1e6:>7.1f}M {4 * n / mib:>7.0f} MiB {max(r['between'] for r in rows) / mib:>10.0f} MiB "
              f"{max(r['after'] for r in rows) / mib:>8.0f} MiB {max(r['peak'] for r in rows) / mib:>11.0f} MiB",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
