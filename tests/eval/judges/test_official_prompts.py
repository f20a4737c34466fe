"""The benchmarks' official prompt texts reach the judge verbatim: what the scripted server receives equals
the official reference texts (pinned by sha256 below) with only the placeholders filled (filled here by hand,
independently of fitrain's code)."""
import hashlib
import json

from fitrain.core.accounting import Rejects
from fitrain_eval.judges import mixeval, mtbench101 as mt, official, pairwise as pw
from tests.helpers.eval_clients import DATA, judge_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer

# sha256 of each official reference text, as published at the commits named in eval/judges/prompts/README.md
REFERENCE_SHA256 = {
    "alpaca_eval/alpaca_eval_clf.txt": "784227e6dc2832fc08c43d2c8ea3a308e7523780187a1aaad2f85e30bac85f62",
    "alpaca_eval/alpaca_eval_judge.json": "5b4160fbf32be2138a1055864bf054f4428f871fe6decdf743594634a5ff9e3b",
    "alpaca_eval/weighted_alpaca_eval_gpt4_turbo_configs.yaml": "fd5c656d9959ffd63b986c8216a81e83e001d17ced5a08defc1c857ce9dd033e",
    "mixeval/FIVE_SHOT_PREFIX_FREEFORM.txt": "19b0b95363b1430047d3b468f38370ce31b94606ca0d270fec88fb3a18d7aca3",
    "mixeval/FIVE_SHOT_PREFIX_MULTIPLECHOICE.txt": "5bea09299e5e8f70e60a243bbc06d1501a2aa212354c2030f9557058033006e1",
    "mixeval/judge_freeform.system.txt": "634b459c5a48fd5649b50fc3b10843e2d2c7fb07c8860608fbc922e7ffc312c7",
    "mixeval/judge_freeform.user.txt": "7a77bcf1d3c2fc1580068b0e875e28ce25c0b7a9b698ec3a9d4eca293d47f4dd",
    "mixeval/judge_multichoice.system.txt": "f4624fd11ded6972e31ba2eab46df7204e72aca9b8170aa9f83e98939477323a",
    "mixeval/judge_multichoice.user.txt": "46897e891a07a1f6c304079a2aa7ee605551b832e19f147d9ffe2ce7b84dfad4",
    "mixeval/mixeval_prompts.json": "11da783f3bf168aa805adc1131167403e47fb13a058d9160977973c93f707224",
    "mt_bench_101/judge_preamble.txt": "a89ea6ac0cc01401f372ae101c1fa83646ae54829ea749910f0277861803f2af",
    "mt_bench_101/mt_bench_101_judge.json": "dab93e04d2c137fd8a97cdd9ba00b84b6b833d877dd9dc534f8fbbaed3f683d4",
    "mt_bench_101/score_format.txt": "cdadb1455a1ed175f6e47ecd8207028d44d0f8cf7a21fa6120f2da175ee6d299",
    "mt_bench_101/task_AR.txt": "9438e8dd5b93a7501bfd1d3a29d9985d2574ec870b7b376c809c8806bc2eabac",
    "mt_bench_101/task_CC.txt": "aceed61d8d0484f7d05e00308257266770991b133202132da60f8aaa689dbe77",
    "mt_bench_101/task_CM.txt": "876b7eca763cf0d988fa270c88e40ed7e742be9e1a50cadf2c3dcad22e2c681a",
    "mt_bench_101/task_CR.txt": "04d8a6dc6688afaece1d2ccfa7bf838bebaed765d89cd3e8583d3cb628a74f35",
    "mt_bench_101/task_FR.txt": "04d8a6dc6688afaece1d2ccfa7bf838bebaed765d89cd3e8583d3cb628a74f35",
    "mt_bench_101/task_GR.txt": "4f5337011f9063b69bb3bad789ecf9d09441bda7a333c59f44558e84707bb847",
    "mt_bench_101/task_IC.txt": "2ce61a001ad6f1d2f5da028ac67fd6b85e53185a66f99ac5212f44397fbf1fdf",
    "mt_bench_101/task_MR.txt": "8e9cb2241c50df485ccb4a696af00313fd16185f115b69e89b81e94e51520c3c",
    "mt_bench_101/task_PI.txt": "622140c59587ada393f0716ea9e1abd742ea5ec242492b5d6b9a7f4ddbea64f4",
    "mt_bench_101/task_SA.txt": "c28c83c1039b5c6a172d2e8b1ebfb06d60a31e5a8cbfc05c7069e4a5b5873494",
    "mt_bench_101/task_SC.txt": "78a6351a853d9b3a630f04425ac89ab088ee9401d4c3b357b708e6e3b878e1f0",
    "mt_bench_101/task_SI.txt": "2e50f49aa8074efe208786c48c69add71f46b88c72aadf1e3d689b4dcb5977ae",
    "mt_bench_101/task_TS.txt": "77f9bd0e0574d0448e06e1c0aa5b7bfedeaa1f131d84f037b9022293b1ac33e8",
    "mt_bench_101/user_template.txt": "c598ff7875c79b05544d7bb8e6f0b382f18d14b7c2dcd9e5a37cc31a870cb5d6",
    "mt_bench_101/user_template_with_reference.txt": "2d3413e060a9f8c79325279cf3c241fdd04eca729ebd20f812c698f50759e9a2",
}
REF = official.PROMPTS  # the package copies, verified against REFERENCE_SHA256 below


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
    ours = sorted(p.relative_to(official.PROMPTS).as_posix() for p in official.PROMPTS.rglob("*") if p.is_file()
                  and p.name != "README.md")
    assert ours == sorted(REFERENCE_SHA256)
    for rel in ours:
        assert hashlib.sha256((official.PROMPTS / rel).read_bytes()).hexdigest() == REFERENCE_SHA256[rel], rel


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
