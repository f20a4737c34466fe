"""fitrain's own paraphrased judge prompts (``prompts=paraphrased``), kept as a named option beside the
benchmarks' official ones (the default). They are shorter and fitrain's wording, not the benchmarks': scores
made with them are not comparable with published numbers. Every judgment records which set it used.

* MixEval: one short grading prompt that also shows the context; 0-1 grades; a letter extractor for
  multiple choice; model-side instructions ``Answer the question briefly.`` / ``Answer with the letter of the
  correct option.``
* MT-Bench-101: a one-line rubric per task; the gold answer of the current turn shown for MR and GR; the
  *last* ``[[n]]`` of the reply is the score.
* Head-to-head: both orders, ``[[A]]``/``[[B]]``/``[[tie]]``, an instruction's score the mean of its two
  judgments.
"""
from __future__ import annotations

from fitrain.core.llm import Request
from fitrain_eval.judges.common import letters

MIXEVAL_FF_VERSION = "mixeval-freeform-v1"
MIXEVAL_MC_VERSION = "mixeval-mc-letter-v1"
MTBENCH101_VERSION = "mtbench101-turn-v2"
PAIRWISE_VERSION = "pairwise-v1"

# One line per task: what a good answer to the current turn does (our wording of the task definitions).
MTBENCH101_RUBRICS = {
    "AR": "Anaphora resolution: the answer resolves pronouns and references to earlier turns correctly.",
    "IC": "Instruction clarification: for an ambiguous request the answer asks a useful clarifying question; "
          "once clarified it answers correctly.",
    "SI": "Separate input: the answer follows the task instruction given in an earlier turn and applies it "
          "to the new input.",
    "CC": "Content confusion: the answer notices that the question differs from a similar earlier one and "
          "answers the question actually asked.",
    "CR": "Content rephrasing: the answer rewrites the given content as requested while keeping its meaning.",
    "MR": "Mathematical reasoning: the reasoning and the final result are correct, using facts from earlier "
          "turns where needed.",
    "PI": "Proactive interaction: the answer engages the user, responds to their feelings or statements and "
          "keeps the conversation going naturally.",
    "TS": "Topic shift: the answer follows the user's switch to a new topic and does not cling to the old one.",
    "CM": "Context memory: the answer correctly recalls and uses information given earlier in the dialogue.",
    "SC": "Self-correction: when the user rightly points out an error, the answer corrects it properly.",
    "FR": "Format rephrasing: the answer restructures the content into the requested format.",
    "SA": "Self-affirmation: when the user wrongly challenges a correct answer, the answer keeps the correct "
          "position politely.",
    "GR": "General reasoning: the answer's reasoning is sound and its conclusion correct given all turns.",
}
MTBENCH101_REFERENCE_TASKS = ("MR", "GR")


def _options(options: list[str]) -> str:
    return "\n".join(f"{letter}. {o}" for letter, o in zip(letters(len(options)), options))


def mixeval_model_prompt(kind: str, prompt: str, context: str | None, options: list[str] | None) -> str:
    head = f"{context.strip()}\n\n" if context else ""
    if kind == "multiple_choice":
        return f"{head}{prompt.strip()}\n{_options(options)}\nAnswer with the letter of the correct option."
    return f"{head}{prompt.strip()}\nAnswer the question briefly."


def mixeval_judge_text(kind: str, prompt: str, context: str | None, target: list, options: list[str] | None,
                       answer: str) -> tuple[str, str]:
    """(user message, prompt version)."""
    if kind == "multiple_choice":
        return ("You read a model's answer to a multiple-choice question and decide which single option it "
                "chose. Do not judge whether it is right.\n\n"
                f"Question:\n{prompt.strip()}\n\nOptions:\n{_options(options)}\n\nModel answer:\n{answer}\n\n"
                "Reply with the chosen letter in double brackets, e.g. [[A]]. If the answer picks no option or "
                "several, reply [[none]]."), MIXEVAL_MC_VERSION
    golds = "\n".join(f"- {t}" for t in target)
    ctx = f"Context:\n{context.strip()}\n\n" if context else ""
    return ("You grade a model's short answer against the accepted gold answers. Give 1 when the answer "
            "means the same as a gold answer, 0 when it is wrong or missing, and a value in between for a "
            "partly correct answer.\n\n"
            f"{ctx}Question:\n{prompt.strip()}\n\nGold answers:\n{golds}\n\nModel answer:\n{answer}\n\n"
            "Reply with a short reason, then the grade in double brackets, e.g. [[0.5]]."), MIXEVAL_FF_VERSION


def mtbench101_request(task: str, history: list[dict], t: int, answer: str, id_: str) -> Request:
    ctx = "\n".join(f"User: {h['user']}\nAssistant: {h['bot']}" for h in history[:t]) or "(none)"
    text = (
        "You evaluate one assistant turn of a multi-turn dialogue.\n"
        f"Task {task}. {MTBENCH101_RUBRICS[task]}\n\n"
        f"Earlier dialogue:\n{ctx}\n\nCurrent user turn:\n{history[t]['user']}\n\n"
        + (f"Reference answer (for guidance):\n{history[t]['bot']}\n\n" if task in MTBENCH101_REFERENCE_TASKS else "")
        + f"Assistant's answer to evaluate:\n{answer}\n\n"
        "Score the assistant's answer from 1 (fails the task) to 10 (excellent). Reply with a short reason, "
        "then the score in double brackets, e.g. [[6]].")
    return Request(messages=[{"role": "user", "content": text}], task=MTBENCH101_VERSION, meta={"id": id_})


def pairwise_request(instruction: str, first: str, second: str, id_: str) -> Request:
    text = (
        "You compare two assistant answers to the same user instruction and decide which one is better: "
        "more helpful, correct and relevant, following the instruction. Ignore length unless it affects "
        "quality, and ignore the order in which the answers appear.\n\n"
        f"Instruction:\n{instruction}\n\n[Answer A]\n{first}\n[End of answer A]\n\n"
        f"[Answer B]\n{second}\n[End of answer B]\n\n"
        "Reply with a short reason, then the verdict in double brackets: [[A]], [[B]] or [[tie]].")
    return Request(messages=[{"role": "user", "content": text}], task=PAIRWISE_VERSION, meta={"id": id_})
