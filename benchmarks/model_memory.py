"""Peak CPU memory of building a model on one rank: the meta-device path (what every rank of a sharded run
builds before ``fully_shard``; fitrain.train.init) against the eager path (the whole fp32 model
materialised and initialised on CPU, what every rank did before).

    .venv/bin/python benchmarks/model_memory.py                       # 1.8b and 7b, meta; 1.8b eager
    .venv/bin/python benchmarks/model_memory.py --eager 1.8b 7b      # also 7b eager (needs ~30 GB)
    .venv/bin/python benchmarks/model_memory.py --world 8            # per-rank estimate once sharded over 8

Each case runs in a fresh process; the figure is the peak resident set (VmHWM, reset after the imports
through /proc/self/clear_refs) minus the resident set after the imports, i.e. what building the model adds.
Eager cases too big for this machine are estimated from the parameter count (4 bytes each). The sharded
estimate per rank is its fp32 shards (4 x params / world) plus the blocks of 2^24 values that
fitrain.train.init draws at once (it draws only the rows of the rank's shard). The meta path
must stay under 1 GB (the acceptance bar of the scale work); exit 1 if it does not.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, installed or not

VOCAB = 128256          # the Llama-3 vocabulary of the 1.8b / 7b recipes
CASE = r"""
import json, sys
import torch, transformers
from transformers import LlamaForCausalLM
from fitrain.train.model import ModelConfig, build_model, count_parameters

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
preset, device = sys.argv[1], sys.argv[2]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                                  # reset the high-water mark after the imports
base = status("VmRSS")
model = build_model(ModelConfig(preset=preset), int(sys.argv[3]), "sdpa", seed=0, verbose=False, device=device)
peak = status("VmHWM")
print(json.dumps({"peak_delta": peak - base, "params": count_parameters(model)[0]}))
"""


def measure(preset: str, device: str) -> dict:
    r = subprocess.run([sys.executable, "-c", CASE, preset, device, str(VOCAB)], capture_output=True, text=True,
                       env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin",
                            "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if r.returncode != 0:
        raise SystemExit(f"model_memory.py: {preset} {device} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from fitrain.train.init import BLOCK, WORKERS
    from fitrain.train.model import ModelConfig, parameter_count

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["1.8b", "7b"])
    ap.add_argument("--eager", nargs="*", default=["1.8b"], help="presets also measured eagerly (the rest estimated)")
    ap.add_argument("--world", type=int, default=8, help="ranks for the per-rank estimate once sharded")
    args = ap.parse_args(argv)

    gb = 1e9
    ok = True
    print(f"{'preset':<7} {'params':>8} {'meta build':>11} {'eager build':>20} {'sharded x' + str(args.world):>13}")
    for preset in args.presets:
        cfg = ModelConfig(preset=preset)
        n = parameter_count(cfg, VOCAB)
        meta = measure(preset, "meta")
        assert meta["params"] == n
        eager = (f"{measure(preset, 'cpu')['peak_delta'] / gb:.2f} GB measured" if preset in args.eager
                 else f"~{4 * n / gb:.1f} GB estimated")
        sharded = 4 * n / args.world + 4 * BLOCK * WORKERS
        ok &= meta["peak_delta"] < 1 * gb
        print(f"{preset:<7} {n / 1e9:>7.2f}B {meta['peak_delta'] / gb:>8.3f} GB {eager:>20} "
              f"{sharded / gb:>10.2f} GB", flush=True)
    print("meta path under 1 GB per rank: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
