"""The benchmarks' official prompt texts reach the judge verbatim: what the scripted server receives equals
the reference files in ../shared/data/judge_prompts with only the placeholders filled (filled here by hand,
independently of fitrain's code)."""
import json

from fitrain.core.accounting import Rejects
from fitrain_eval.judges import mixeval, mtbench101 as mt, official, pairwise as pw
from tests.helpers.eval_clients import DATA, judge_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer

REF = DATA / "judge_prompts"


def _ref(rel: str) -> str:
    return (REF / rel).read_bytes().decode("utf-8")


def _sent(requests, reply: str, tmp_path, parse=lambda s: s):
    """The bodies the server received, in the order of ``requests`` (they may arrive in any order)."""
    with ScriptedLLMServer(lambda kind, body: Reply(text=reply)) as srv:
        judge_for(srv, tmp_path, cache=False).judge(requests, parse, Rejects(), "v")
        got = [body for kind, body in srv.requests if kind == "chat"]
    return [next(b for b in got if b["messages"] == r.messages) if any(b["messages"] == r.messages for b in got)
            else got[i] for i, r in enumerate(requests)]


def test_the_package_copies_are_the_reference_files():
    ours = sorted(p.relative_to(official.PROMPTS) for p in official.PROMPTS.rglob("*") if p.is_file()
                  and p.name != "README.md")
    assert ours == sorted(p.relative_to(REF) for p in REF.rglob("*") if p.is_file() and p.name != "README.md")
    for rel in ours:
        assert (official.PROMPTS / rel).read_bytes() == (REF / rel).read_bytes(), rel


def test_mixeval_judges_are_sent_verbatim(tmp_path):
    r = Rejects()
    items = mixeval.load_split(DATA / "mixeval" / "mixeval-2024-08-11", "mixeval_hard", r, limit=2)
    ff = next(i for i in items if i.kind == "free_form" and i.context)
    mc = next(i for i in items if i.kind == "multiple_choice")
    reqs = [mixeval.judge_request(ff, "Paris {response} ok", "official")[0],
            mixeval.judge_request(mc, "B", "official")[0]]
    bodies = _sent(reqs, "[[1.0]]", tmp_path)
    gold = "; ".join(f"<answer {k + 1}> {a}" for k, a in enumerate(ff.target))
    want_ff = _ref("mixeval/judge_freeform.user.txt").replace("{prompt}", ff.prompt).replace(
        "{gold_ans}", gold).replace("{response}", "Paris {response} ok")
    opts = "\n".join(f"{chr(65 + k)}. {o}" for k, o in enumerate(mc.options))
    want_mc = _ref("mixeval/judge_multichoice.user.txt").replace("{prompt}", mc.prompt).replace(
        "{options}", opts).replace("{response}", "B")
    assert bodies[0]["messages"] == [{"role": "system", "content": _ref("mixeval/judge_freeform.system.txt")},
                                     {"role": "user", "content": want_ff}]
    assert bodies[1]["messages"] == [{"role": "system", "content": _ref("mixeval/judge_multichoice.system.txt")},
                                     {"role": "user", "content": want_mc}]
    assert ff.context not in want_ff  # the official free-form judge withholds the context
    # model side: MixEval's instructions, from its own prompt file
    side = json.loads(_ref("mixeval/mixeval_prompts.json"))["model_side_prompts"]
    assert mixeval.model_prompt(mc).endswith("\n" + side["MULTI_CHOICE_PROMPT"]["text"])
    assert mixeval.model_prompt(ff).endswith("\n" + side["FREE_FORM_PROMPT"]["text"])


def test_mtbench101_judge_is_sent_verbatim(tmp_path):
    rows = [json.loads(x) for x in (DATA / "mt_bench_101" / "mtbench101.jsonl").read_text().splitlines()]
    gr = next(r for r in rows if r["task"] == "GR" and len(r["history"]) >= 3)
    ar = next(r for r in rows if r["task"] == "AR")
    d_gr, d_ar = mt.Dialogue("GR", str(gr["id"]), gr["history"]), mt.Dialogue("AR", str(ar["id"]), ar["history"])
    bodies = _sent([mt.judge_request(d_gr, 2, "MY ANSWER"), mt.judge_request(d_ar, 1, "ANS {history}")],
                   "Rating: [[5]]", tmp_path)

    def history(h, t):  # OpenCompass: "\n\n Human: " + user + "\n\nAssistant: " (+ the gold reply of earlier turns)
        return "".join(f"\n\n Human: {x['user']}\n\nAssistant: {x['bot']}" for x in h[:t]) + \
            f"\n\n Human: {h[t]['user']}\n\nAssistant: "

    system = lambda task: _ref("mt_bench_101/judge_preamble.txt") + _ref(f"mt_bench_101/task_{task}.txt") + \
        _ref("mt_bench_101/score_format.txt")  # noqa: E731
    ref_dialogue = str([m for x in gr["history"][:3] for m in ({"role": "user", "content": x["user"]},
                                                              {"role": "assistant", "content": x["bot"]})])
    want_gr = _ref("mt_bench_101/user_template_with_reference.txt").replace("{history}", history(gr["history"], 2)) \
        .replace("{prediction}", "MY ANSWER").replace("{ref_answer}", ref_dialogue)
    want_ar = _ref("mt_bench_101/user_template.txt").replace("{prediction}", "ANS {history}").replace(
        "{history}", history(ar["history"], 1), 1)
    assert bodies[0]["messages"] == [{"role": "system", "content": system("GR")}, {"role": "user", "content": want_gr}]
    assert bodies[1]["messages"] == [{"role": "system", "content": system("AR")}, {"role": "user", "content": want_ar}]


def test_alpaca_eval_annotator_is_sent_verbatim(tmp_path):
    template = _ref("alpaca_eval/alpaca_eval_clf.txt")
    inst, o1, o2 = "Say {output_1} twice.", "the baseline's answer", "the model's answer"
    req = pw.official_request(inst, o1, o2, "0")
    body = _sent([req], "m", tmp_path)[0]
    filled = template.replace("{instruction}", inst, 1).replace("{output_1}", o1, 1).replace("{output_2}", o2, 1)
    system = filled.split("<|im_start|>system\n")[1].split("<|im_end|>")[0].strip()
    user = filled.split("<|im_start|>user\n")[1].split("<|im_end|>")[0].strip()
    assert body["messages"] == [{"role": "system", "content": system}, {"role": "user", "content": user}]
    assert "Say the baseline's answer twice." in user  # AlpacaEval's own first-occurrence replacement, quirk kept
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"]) == (1, True, 5)
