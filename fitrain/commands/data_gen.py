"""`fitrain data-gen STAGE RECIPE [key=value ...]`: the FineInstructions generation pipeline (data_gen/)."""
from __future__ import annotations

import argparse
import json

from fitrain.commands.common import add_recipe_arguments, load

STAGES = ("templatize", "index", "match", "instantiate", "judge", "write")
HELP = "generate FineInstructions pairs: templatize, index, match, instantiate, judge, write (or run all)"
DESCRIPTION = """\
Generate instruction-answer pairs grounded in documents (FineInstructions, arXiv 2601.22146):
queries -> templates -> template index -> document matches -> instantiated pairs -> judged -> final shards
in the released column layout (read by `fitrain prepare`). Each stage works shard by shard with atomic
outputs and _SUCCESS markers: rerunning skips finished shards. Work is stage-major: array task T runs its
contiguous range of shards_per_task shards through each stage in turn, starting a model server (serve.enabled)
once per LLM stage for the whole range. Under a Slurm job array T is SLURM_ARRAY_TASK_ID (or pass --task T;
--shard I runs one shard). Progress lines (rows, rows/s, requests in flight, rejects, ETA) every
progress_every_s seconds.

examples:
  fitrain data-gen run data_gen/quickstart                      # offline: extractive fallback + MiniLM, CPU
  fitrain data-gen run data_gen/quickstart --dry-run            # list stages, shards and what would run
  fitrain data-gen templatize data_gen/dolly_extractive         # Dolly queries -> templates
  fitrain data-gen index data_gen/quickstart                    # embed descriptions into a FAISS index
  fitrain data-gen match data_gen/quickstart match.threshold=0.5 num_shards=4
  fitrain data-gen instantiate data_gen/paper --shard 3         # one shard
  fitrain data-gen run data_gen/paper --stages match,instantiate,judge,write --task 3   # shards 48..63
  fitrain data-gen judge data_gen/paper serve.enabled=false judge.llm.base_url=http://node12:8000/v1   # a running server
  fitrain data-gen write data_gen/quickstart
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name in ("run",) + STAGES:
        sp = sub.add_parser(name, help="all stages in order" if name == "run" else f"the {name} stage",
                            description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_recipe_arguments(sp, example="num_shards=64 match.threshold=0.5")
        sp.add_argument("--shard", type=int, default=None, help="run only this document shard")
        sp.add_argument("--task", type=int, default=None,
                        help="run the shards of this array task (shards_per_task of them; default: "
                             "SLURM_ARRAY_TASK_ID if set, else all shards)")
        sp.add_argument("--dry-run", action="store_true", help="list the stages and shards that would run; load nothing")
        sp.add_argument("--overwrite", action="store_true",
                        help="replace a stage's finished output made with other settings (refused otherwise)")
        if name == "run":
            sp.add_argument("--stages", default="", help=f"comma-separated subset of {','.join(STAGES)}")


def run(args: argparse.Namespace) -> int:
    from data_gen.pipeline import DataGenConfig, plan
    from data_gen.pipeline import run as run_pipeline

    from fitrain.core.recipes import packaged_path

    cfg = load(args, DataGenConfig)
    if cfg is None:
        return 0
    # a shipped recipe names shipped files relative to the package (it must work from any directory)
    cfg.templatize.bank = [packaged_path(b) for b in cfg.templatize.bank]
    stages = [s for s in args.stages.split(",") if s] if args.stage == "run" else [args.stage]
    if args.dry_run:
        for row in plan(cfg, stages or None, args.shard, args.task):
            todo = row["todo"]
            print(f"{row['stage']:<12} shards {row['shards']:>4}  done {len(row['done']):>4}  "
                  f"would run {todo if len(todo) <= 12 else f'{todo[0]}..{todo[-1]} ({len(todo)} shards)'}"
                  f"  backend {row['backend'] or '-'}  -> {row['dir']}")
        return 0
    result = run_pipeline(cfg, stages or None, args.shard, task=args.task, overwrite=args.overwrite)
    summary = {s: {k: v for k, v in st.items() if k in ("ran", "skipped", "complete", "missing", "wall_s")}
               | ({"in": st["stats"]["in"], "out": st["stats"]["out"],
                   "rejected": st["stats"].get("rejected", {}).get("by_reason", {})}
                  if st.get("stats") else {}) for s, st in result.items()}
    print(json.dumps(summary, indent=2))
    return 0
