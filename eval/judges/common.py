"""The one judge client of the eval judges (MixEval, MT-Bench-101, pairwise).

A :class:`Judge` wraps :mod:`fitrain.core.llm`: an OpenAI-compatible endpoint or a local transformers model,
judgments cached on disk (a rerun does not pay twice), unparsable replies asked again then counted
(:func:`fitrain.core.llm.complete_parsed`). Every judgment it returns carries the judge model, the prompt
version and the decoding settings, so a saved judgment says exactly how it was made.
"""
from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from fitrain.core.accounting import Rejects
from fitrain.core.checks import FRACTION, NON_NEGATIVE, check_fields
from fitrain.core.errors import FitrainError
from fitrain.core.llm import LLMConfig, Request
from fitrain.core.serve import ServeConfig


def _judge_llm() -> LLMConfig:
    return LLMConfig(backend="openai", model="", max_new_tokens=512, temperature=0.0)


@dataclass
class JudgeConfig:
    llm: LLMConfig = field(default_factory=_judge_llm)
    max_parse_retries: int = 2       # an unparsable reply is asked again this many times, then counted
    cache: bool = True               # judgments cached in <eval dir>/judge_cache.jsonl (unless llm.cache is set)
    # judge requests failed at the server (5xx, timeouts) beyond this share of a call fail the benchmark
    # (exit 2, nothing written for it); below it they are counted (fitrain.core.server_failures)
    max_failed_share: float = 0.1
    # serve.enabled: `fitrain eval` starts the judge server itself (`serve.command llm.model`, a free port, the
    # identity check, stopped at the end): the lifecycle data_gen's model servers use (fitrain.core.serve)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def __post_init__(self) -> None:
        check_fields(self, max_parse_retries=NON_NEGATIVE, max_failed_share=FRACTION)


def judge_config_for(cfg: Any, benchmark: str) -> JudgeConfig:
    """The judge of one benchmark: ``eval.judge`` with ``eval.judges.<benchmark>`` merged over it (e.g.
    ``judges: {pairwise: {llm: {model: gpt-4-turbo}}}``); unknown benchmarks and keys are one-line errors."""
    from fitrain.core.config import merge_settings
    from fitrain_eval.benchmarks import benchmarks

    judged = [b.name for b in benchmarks() if b.judged]
    unknown = sorted(set(cfg.judges) - set(judged))
    if unknown:
        raise FitrainError(f"eval.judges: {unknown} not judged benchmarks; the judged benchmarks are {judged}")
    own = cfg.judges.get(benchmark)
    if not own:
        return cfg.judge
    return merge_settings(cfg.judge, own, f"eval.judges.{benchmark}")


@contextlib.contextmanager
def started_judges(configs: dict[str, JudgeConfig], out: Path) -> Iterator[dict[str, "Judge"]]:
    """A Judge per benchmark; a judge with ``serve.enabled`` behind a server started here (one per served
    model, shared by the benchmarks that name it) and stopped when the block ends."""
    from dataclasses import replace

    from fitrain.core.serve import served

    with contextlib.ExitStack() as stack:
        pointed: dict[tuple, LLMConfig] = {}
        judges = {}
        for name, jc in configs.items():
            llm = jc.llm
            if jc.serve.enabled:
                key = (llm.model, tuple(jc.serve.command), tuple(jc.serve.extra_args))
                if key not in pointed:
                    log = Path(jc.serve.log or out / f"judge-server-{len(pointed)}.log")
                    pointed[key] = stack.enter_context(served(llm, jc.serve, log))
                llm = replace(llm, backend="openai", base_url=pointed[key].base_url)
            judges[name] = Judge(replace(jc, llm=llm), cache_dir=out)
        yield judges


@dataclass
class Judged:
    """One judgment: the parsed value (None when failed/unparsable) and how it was obtained."""

    value: Any
    raw: dict


def check_judge(cfg: JudgeConfig) -> None:
    """Fail fast on a judge that cannot work: a bad backend or model setting, or an OpenAI-compatible server
    that does not answer or does not serve ``judge.llm.model``. ``fitrain eval`` calls it before any
    benchmark runs, so that an unreachable judge costs no lm-eval time."""
    from fitrain.core.llm import check_reachable

    llm = cfg.llm
    if cfg.serve.enabled and llm.backend != "openai":
        raise FitrainError("judge.serve.enabled starts an OpenAI-compatible server: set judge.llm.backend=openai")
    if llm.backend == "openai" and not llm.model:
        raise FitrainError("judge.llm.model must name the judge model served at judge.llm.base_url")
    if llm.backend not in ("openai", "transformers"):
        raise FitrainError(f"judge.llm.backend must be openai or transformers, got '{llm.backend}'")
    if not cfg.serve.enabled:  # (a server this job starts is checked when it is up: fitrain.core.serve)
        check_reachable(llm, check_model=True)


class Judge:
    def __init__(self, cfg: JudgeConfig, cache_dir: str | Path | None = None, backend=None):
        from dataclasses import replace

        from fitrain.core.llm import make_backend

        llm = cfg.llm
        if backend is None:
            check_judge(cfg)
            if cfg.cache and not llm.cache and cache_dir is not None:
                llm = replace(llm, cache=str(Path(cache_dir) / "judge_cache.jsonl"))
            backend = make_backend(llm)
        self.cfg, self.llm, self.backend = cfg, llm, backend
        self.model = backend.model

    def decoding(self) -> dict:
        return {"temperature": self.llm.temperature, "max_new_tokens": self.llm.max_new_tokens}

    def judge(self, requests: Sequence[Request], parse: Callable[[Any], Any], rejects: Rejects,
              prompt_version: str, what: str = "judge", parse_completion: bool = False) -> list[Judged]:
        """Judge every request; each result records the judge model, prompt version and decoding (the
        request's own token limit and log-probabilities where it sets them). ``parse`` gets the reply text,
        or the whole completion with ``parse_completion``."""
        from fitrain.core.llm import complete_parsed

        from fitrain.core.server_failures import TrackedRejects, check_share, server_of

        mine = TrackedRejects()
        values = complete_parsed(self.backend, requests, parse, mine, max_parse_retries=self.cfg.max_parse_retries,
                                 what=what, parse_completion=parse_completion)
        rejects.merge(mine)
        check_share(mine, len(requests), self.cfg.max_failed_share, server_of(self.backend), f"eval {what}")
        decoding = self.decoding()
        if requests and requests[0].max_new_tokens:
            decoding["max_new_tokens"] = requests[0].max_new_tokens
        if requests and requests[0].logprobs:
            decoding["top_logprobs"] = requests[0].logprobs
        info = {"judge_model": self.model, "judge_backend": self.llm.backend, "prompt_version": prompt_version,
                "decoding": decoding}
        return [Judged(v, dict(info)) for v in values]


# ------------------------------------------------------------------------------------------- parsing
_BRACKETED = re.compile(r"\[\[\s*([^\[\]]+?)\s*\]\]")


def bracketed(text: str) -> str:
    """The content of the last ``[[...]]`` in a judge reply; ValueError when there is none."""
    found = _BRACKETED.findall(text or "")
    if not found:
        raise ValueError("no [[...]] verdict in the reply")
    return found[-1]


def first_match(text: str, patterns: Sequence[str]) -> str:
    """Group 1 of the first match of the first pattern that matches (the official parsers' rule: the
    *first* rating in the reply, with fallback patterns); ValueError when none does."""
    for pat in patterns:
        m = re.search(pat, text or "")
        if m:
            return m.group(1)
    raise ValueError(f"no match of {list(patterns)} in the reply")


def parse_number(text: str, lo: float, hi: float) -> float:
    raw = bracketed(text)
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"verdict [[{raw}]] is not a number") from None
    if not lo <= v <= hi:
        raise ValueError(f"verdict {v} outside [{lo}, {hi}]")
    return v


def letters(n: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]


def save_records(path: str | Path, records: list[dict]) -> None:
    """Per-item judgments as JSONL (atomic)."""
    import json

    from fitrain.core.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")


def require_data(path: str | Path, benchmark: str, setting: str, source: str) -> None:
    """A benchmark file (or folder) that is not there is a one-line error naming the recipe setting to change
    and where the data comes from (a relative path resolves against the directory the job runs in; the default,
    ``official``, is fetched and verified by fitrain_eval.data_sources before this check)."""
    p = Path(path)
    if not p.exists():
        raise FitrainError(f"{benchmark} data not found: {p} (resolved {p.resolve()}); set {setting} (eval.{setting} "
                           f"in an experiment recipe) to it; get it from {source}")


def load_benchmark_json(p: Path, benchmark: str, expected: type, shape: str) -> Any:
    """Read a benchmark's JSON file; a missing file, invalid JSON or the wrong top-level type is a clear
    error naming the file and the expected ``shape``."""
    if not p.is_file():
        raise FitrainError(f"{benchmark} file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FitrainError(f"{p}: not a {benchmark} file: not valid JSON ({e}); expected {shape}") from None
    if not isinstance(data, expected):
        raise FitrainError(f"{p}: not a {benchmark} file: expected {shape}, got a {type(data).__name__}")
    return data
