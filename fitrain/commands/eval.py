"""fitrain eval: evaluate a checkpoint (lm-eval, judged benchmarks, decontamination) or write a report."""
from __future__ import annotations

import argparse

ADD_HELP = False  # add_arguments adds -h/--help: `fitrain eval report --help` is the report's help
HELP = "evaluate a checkpoint (lm-eval tasks, MixEval, MT-Bench-101, head-to-head) or write a report"
REPORT_USAGE = "fitrain eval report RUN_DIR... [--out DIR] [--title TITLE] [--wandb] [--print-config] [key=value ...]"
REPORT_TEXT = """\
  Markdown + HTML report of experiment / train arm / eval arm directories: a headline table of every arm
  on every benchmark with 95% paired-bootstrap intervals, each arm's difference to the reference arm with
  its interval and p-value, the reference's head-to-head win rate against each arm; scores.png,
  differences.png, loss_vs_tokens.png; --wandb logs it to W&B. key=value sets the report's settings:
  reference=fi (the arm compared with), bootstrap=10000, confidence=0.95, seed=0, headline=[...],
  exclude_contaminated=false; --print-config shows them all.
"""
REPORT_EXAMPLES = """\
  fitrain eval report runs/exp --out runs/exp/report
  fitrain eval report runs/exp reference=standard bootstrap=2000
  fitrain eval report runs/exp runs/other/train/fi --print-config
"""
DESCRIPTION = f"""\
fitrain eval RECIPE [key=value ...]
  Evaluate one model and write <out>/results.json (flat metrics; merged with earlier jobs' results),
  generations with their exact prompts, judgments (judge model, prompt version, decoding recorded),
  lm-eval's JSON. `model=` is an exported HF dir, a train run dir (train/<arm>: its hf/ or latest
  checkpoint) or one checkpoint (exported first), so one job per saved checkpoint can run it; outputs
  then go to <experiment>/eval/<arm>/checkpoints/<name>. Models are prompted in their training format
  (generation.prompt_format=instruction: `Instruction: ...\\n\\nAnswer: `; or chat | raw). Generation runs
  on transformers (CPU/GPU) or an OpenAI-compatible server (generation.llm.backend=openai, e.g. `vllm
  serve`); the judge is an OpenAI-compatible endpoint (judge.llm.*) or a local transformers model.
  RECIPE is a YAML file or a name under recipes/ (eval/local, eval/cloze, eval/judged, ...).

fitrain eval fetch [mixeval mtbench101 alpaca_eval]
  Download the judged benchmarks' official files (pinned revisions) into the cache once and verify their
  sha256 (FITRAIN_DATA_CACHE, default ~/.cache/fitrain/data); the recipes' `official` settings then read
  them offline. FITRAIN_DATA_MIRROR=URL reads from a mirror instead.

{REPORT_USAGE}
{REPORT_TEXT}  `fitrain eval report --help` lists the report's options alone.

examples:
  fitrain eval eval/local model=runs/quick/train/fi
  fitrain eval eval/cloze model=runs/exp/train/fi/hf lm_eval.formats=[plain,instruction]
  fitrain eval eval/judged model=runs/exp/train/fi judge.llm.base_url=http://judge:8000/v1 judge.llm.model=Qwen/Qwen2.5-72B-Instruct
  fitrain eval eval/judged model=runs/exp/train/fi pairwise.baseline_outputs=runs/exp/eval/standard
  fitrain eval eval/local model=runs/exp/train/fi/checkpoints/step-00001000.ckpt   # a job per checkpoint
{REPORT_EXAMPLES}"""


class _Help(argparse.Action):
    """-h/--help: after `report`, the report's own help; otherwise the command's."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        (report_parser() if getattr(namespace, "recipe", None) == "report" else parser).print_help()
        parser.exit()


def _report_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--out", default="", help=f"{prefix}output directory (default <first run dir>/report)")
    p.add_argument("--title", default="fitrain report", help=f"{prefix}title")
    p.add_argument("--wandb", action="store_true", help=f"{prefix}also log the table and plots to W&B")


def report_parser() -> argparse.ArgumentParser:
    """What `fitrain eval report` takes, for its help (the words themselves are parsed by the eval parser)."""
    p = argparse.ArgumentParser(prog="fitrain eval report", usage=REPORT_USAGE,
                                description=f"{REPORT_TEXT}\nexamples:\n{REPORT_EXAMPLES}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="experiment, train arm or eval arm directory")
    p.add_argument("settings", nargs="*", metavar="key=value", help="a report setting (--print-config shows them)")
    p.add_argument("--print-config", action="store_true", help="print the merged report settings and exit")
    _report_options(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fitrain.commands.common import add_recipe_arguments

    p.add_argument("-h", "--help", action=_Help, help="show this help message and exit (after `report`: the report's)")
    add_recipe_arguments(p, example="generation.max_new_tokens=128")
    p.add_argument("--overwrite", action="store_true",
                   help="start `out`'s results afresh when they were made with another model or settings")
    _report_options(p, "report: ")


def run(args: argparse.Namespace) -> int:
    import json

    if args.recipe == "report":
        return _report(args)
    if args.recipe == "fetch":
        from fitrain_eval.data_sources import fetch_benchmarks

        for p in fetch_benchmarks(args.overrides):
            print(p)
        return 0
    from fitrain.commands.common import load
    from fitrain_eval.run import EvalConfig, evaluate

    cfg = load(args, EvalConfig)
    if cfg is None:
        return 0
    cfg.overwrite = cfg.overwrite or args.overwrite
    print(json.dumps(evaluate(cfg), indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    import dataclasses

    from fitrain.core.config import load_config, to_yaml
    from fitrain.core.errors import FitrainError
    from fitrain_eval.report import ReportConfig, make_report

    dirs = [a for a in args.overrides if "=" not in a]
    if not dirs and not args.print_config:
        raise FitrainError(f"usage: {REPORT_USAGE}")
    settings = [a for a in args.overrides if "=" in a]
    fixed = {"run_dirs": dirs, "out": args.out, "title": args.title, "wandb": args.wandb}
    clash = sorted({a.split("=", 1)[0] for a in settings} & set(fixed))
    if clash:
        raise FitrainError(f"report: set {', '.join(clash)} with the positional directories or --options, not key=value")
    cfg = dataclasses.replace(load_config(ReportConfig, overrides=settings), **fixed)  # checks the directories too
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    path = make_report(cfg.run_dirs, cfg.out or None, cfg)
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0
