import json

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.llm import LLMConfig
from fitrain.data.formatting import FormatConfig
from fitrain_eval.generate import GenerationConfig, Generator, strip_answer_cue, training_format
from tests.eval.conftest import save_tiny_llama
from tests.helpers.eval_clients import generator_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer


def test_empty_and_degenerate_outputs_are_counted_not_aborted(capsys):
    outs = {"q0": "  ", "q1": "\n...\n", "q2": "an answer"}
    with ScriptedLLMServer(lambda kind, body: Reply(text=outs[body["prompt"]])) as srv:
        r = Rejects()
        gens = generator_for(srv).generate([(k, [{"role": "user", "content": k}]) for k in outs], r)
        assert [g.output for g in gens] == ["", "...", "an answer"]
        assert r.counts == {"generation_empty": 1, "generation_degenerate": 1}
    with ScriptedLLMServer(lambda kind, body: Reply(text="\n")) as srv:  # a model that emits only newlines
        r = Rejects()
        gens = generator_for(srv).generate([(str(i), [{"role": "user", "content": f"q{i}"}]) for i in range(3)], r)
    assert [g.output for g in gens] == ["", "", ""] and r.counts == {"generation_empty": 3}
    assert "all 3 generation outputs of 'scripted' are empty or failed" in capsys.readouterr().err


class _Recorder:
    name, model = "recorder", "recorder"

    def __init__(self):
        self.requests = []

    def complete(self, requests, progress=None):
        from fitrain.core.llm import Completion

        self.requests += list(requests)
        return [Completion("ok") for _ in requests]


def test_prompts_longer_than_the_context_are_shortened_by_the_stated_rule(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer

    model = save_tiny_llama(tmp_path / "m", tokenizer_dir, max_positions=128)
    tok = AutoTokenizer.from_pretrained(model)
    cfg = GenerationConfig(llm=LLMConfig(backend="transformers", model=str(model)), max_new_tokens=16)
    rec = _Recorder()
    g = Generator(cfg, backend=rec)
    long_turns = []
    for i in range(6):
        long_turns += [{"role": "user", "content": f"question number {i} about the standard library"},
                       {"role": "assistant", "content": f"answer number {i} with a few more words"}]
    dialogue = long_turns + [{"role": "user", "content": "the last question?"}]
    huge = [{"role": "user", "content": " ".join(f"word{i}" for i in range(200)) + " END?"}]
    short = [{"role": "user", "content": "hi"}]
    r = Rejects()
    gens = g.generate([("d", dialogue), ("h", huge), ("s", short)], r)
    budget = 128 - 16
    n = [len(tok(x.prompt, add_special_tokens=False)["input_ids"]) for x in rec.requests]
    assert all(k <= budget for k in n), n
    d, h, s = rec.requests
    assert d.prompt.endswith("Instruction: the last question?\n\nAnswer: ") and d.prompt.startswith("Instruction: question")
    kept = d.prompt.count("Instruction: ") - 1
    assert gens[0].meta == {"turns_dropped": 6 - kept} and 0 < kept < 6
    assert "END?" in h.prompt and "word0 " not in h.prompt and gens[1].meta["tokens_cut"] > 0
    assert s.prompt == "Instruction: hi\n\nAnswer: " and not gens[2].meta
    assert r.counts == {"generation_prompt_turns_dropped": 1, "generation_prompt_cut": 1}
    with pytest.raises(FitrainError, match="leaves no room for a prompt"):
        Generator(GenerationConfig(llm=cfg.llm, max_new_tokens=124), backend=rec)


def test_the_exports_recorded_format_is_used(tmp_path, tokenizer_dir):
    from fitrain_eval.run import EvalConfig, with_model_format

    model = save_tiny_llama(tmp_path / "m", tokenizer_dir)
    fmt = {"template": "Q: {instruction}\nA: {answer}", "loss_mask": "response", "use_chat_template": False,
           "add_bos": False}
    (model / "fitrain_export.json").write_text(json.dumps({"format": fmt, "arm": "fi"}))
    assert training_format(model, FormatConfig()) == FormatConfig(**fmt)
    cfg = with_model_format(EvalConfig(), model)
    assert cfg.generation.format.template == fmt["template"] and cfg.generation.stop == ["\n\nQ:"]
    g = Generator(cfg.generation, backend=_Recorder())
    assert g.request([{"role": "user", "content": "why?"}], "x").prompt == "Q: why?\nA: "
    off = EvalConfig()
    off.generation.format_from_model = False
    assert with_model_format(off, model).generation.format == FormatConfig()
    assert training_format(tmp_path, FormatConfig()) == FormatConfig()  # no export record: the configured one


def test_no_doubled_answer_cue():
    fmt = FormatConfig()
    assert strip_answer_cue("Question: Why?\nAnswer:", fmt) == "Question: Why?"
    assert strip_answer_cue("Why?", fmt) == "Why?"
    assert strip_answer_cue("Q: x\nA:", FormatConfig(template="Q: {instruction}\nA: {answer}")) == "Q: x"
