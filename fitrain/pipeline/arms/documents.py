"""The ``documents`` arm: the source documents of an fi arm's pairs (``pairs_of``, default the first fi
arm): standard pre-training on the same documents, checked against that arm's budget."""
from __future__ import annotations

from dataclasses import dataclass

from fitrain.core.errors import FitrainError
from fitrain.pipeline.arms.base import ArmKind, ArmSpec, Documents
from fitrain.pipeline.configs import prepare_config


@dataclass
class DocumentsSpec(ArmSpec):
    pairs_of: str = ""                     # the fi arm whose source documents this arm trains on ('' = the first)


def _pair_arms(arms) -> list[str]:
    return [b.name for b in arms.specs if arms.kind(b.name).reference]


class DocumentsKind(ArmKind):
    name, settings, label = "documents", DocumentsSpec, "the source documents of an fi arm's pairs"
    data_gen = True

    def check(self, spec, arms) -> None:
        who, fi = f"arm '{spec.name}'", _pair_arms(arms)
        if not fi:
            raise FitrainError(f"{who}: a documents arm trains on the source documents of an fi arm's pairs; "
                               "add an fi arm (or use a corpus arm for other documents)")
        if spec.pairs_of and spec.pairs_of not in fi:
            raise FitrainError(f"{who}: pairs_of '{spec.pairs_of}' is not an fi arm; fi arms: {fi}")

    def pairs_source(self, arms, spec) -> str:
        return spec.pairs_of or _pair_arms(arms)[0]

    def data_step(self, cfg, arms, spec) -> str | None:
        src = arms.pairs_source(spec.name)
        return arms.kind(src).data_step(cfg, arms, arms[src]) or "data_gen"

    def prepare_deps(self, cfg, arms, spec) -> list[str]:
        return ["data_gen", "tokenizer", f"prepare-{arms.pairs_source(spec.name)}", self.data_step(cfg, arms, spec)]

    def prepare_input(self, cfg, arms, spec, pc, check):
        """The same settings and inputs as its fi arm, read as documents."""
        src = arms.pairs_source(spec.name)
        pc = prepare_config(cfg, src, check)
        pc.budget.enabled, pc.documents_from_pairs, pc.budget_from = False, True, str(cfg.layout.prepared(src))
        return pc

    def read_documents(self, cfg, spec) -> Documents:
        from fitrain.core.accounting import Rejects
        from fitrain.data.records import iter_document_pairs

        inp = prepare_config(cfg, spec.name).input
        return lambda: (g.document for g in iter_document_pairs(inp, Rejects()) if g.document.text)

    def describe(self, arms, spec) -> str:
        return f"source documents of {arms.pairs_source(spec.name)}"

    def prepare_what(self, arms, spec) -> str:
        return f"the source documents of {arms.pairs_source(spec.name)}'s pairs (budget from it)"


KIND = DocumentsKind()
