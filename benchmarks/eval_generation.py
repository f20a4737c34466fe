"""Generation tokens/s of fitrain's transformers backend (through fitrain_eval.generate.Generator) for the
tiny preset model (random init, embeddings untied), against a bare ``model.generate`` loop on the same prompts, batches and settings.

    .venv/bin/python benchmarks/eval_generation.py [--prompts 64] [--new-tokens 64] [--batch-size 16] [--threads N] [--rounds 3]

On a machine whose cores are busy with other jobs, use --threads 1: torch's default of one thread per
core then spends its time waiting for busy cores (measured here: one forward 80x slower with 2 threads
than with 1 while the load average was ~9 on 2 cores).

Both paths decode greedily the same sequences; the generated-token count comes from the bare loop
(tokens before EOS, pad excluded) and is used for both rates. Prints both rates and their ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def build(tmp: Path):
    from pydoc_data.topics import topics
    from transformers import AutoTokenizer

    from fitrain.train.model import ModelConfig, build_model
    from fitrain.data.tokenizer import TokenizerConfig, train_tokenizer_from_texts

    tok_dir = train_tokenizer_from_texts([topics[k] for k in sorted(topics)],
                                         TokenizerConfig(out=str(tmp / "tok"), vocab_size=1000))
    tok = AutoTokenizer.from_pretrained(tok_dir)
    # untied: a random-init model with tied embeddings echoes its last input token (here a space), and
    # every output would be whitespace (the Generator refuses all-empty outputs)
    model = build_model(ModelConfig(preset="tiny", tie_embeddings=False), len(tok), seed=0,
                        token_ids={"eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id})
    model.config.use_cache = True  # as fitrain.train.export writes it
    out = tmp / "hf"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, [topics[k][:200] for k in sorted(topics)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best time of each side counts")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fitrain.core.accounting import Rejects
    from fitrain.core.llm import LLMConfig
    from fitrain_eval.generate import GenerationConfig, Generator

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        hf, texts = build(Path(d))
        gen = Generator(GenerationConfig(llm=LLMConfig(backend="transformers", model=str(hf), device="cpu",
                                                       batch_size=args.batch_size),
                                         max_new_tokens=args.new_tokens, stop=[]))
        items = [(str(i), [{"role": "user", "content": texts[i % len(texts)]}]) for i in range(args.prompts)]
        prompts = [gen.request(m, i).prompt for i, m in items]

        tok = AutoTokenizer.from_pretrained(hf)
        tok.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(hf).eval()

        def bare() -> tuple[int, list[str]]:
            n, outs = 0, []
            for i in range(0, len(prompts), args.batch_size):
                enc = tok(prompts[i:i + args.batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
                with torch.no_grad():
                    g = model.generate(**enc, max_new_tokens=args.new_tokens, do_sample=False,
                                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
                for row in g[:, enc["input_ids"].shape[1]:].tolist():
                    row = row[:row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
                    n += len(row)
                    outs.append(tok.decode(row, skip_special_tokens=True).strip())
            return n, outs

        bare()  # warm-up (both paths then run warm)
        gen.generate(items[: args.batch_size], Rejects())
        t_bare = t_ours = float("inf")
        for _ in range(args.rounds):  # alternating rounds, best of each: other load hits both alike
            t0 = time.perf_counter()
            n_tokens, bare_out = bare()
            t_bare = min(t_bare, time.perf_counter() - t0)
            t0 = time.perf_counter()
            ours = gen.generate(items, Rejects())
            t_ours = min(t_ours, time.perf_counter() - t0)
        same = sum(a == (g.output or "") for a, g in zip(bare_out, ours))
        print(f"tiny preset, {args.prompts} prompts, batch {args.batch_size}, up to {args.new_tokens} new tokens, "
              f"{n_tokens} generated tokens, {torch.get_num_threads()} CPU threads")
        print(f"identical outputs: {same}/{len(ours)}")
        print(f"bare model.generate loop : {n_tokens / t_bare:8.1f} tokens/s ({t_bare:.2f} s)")
        print(f"fitrain transformers     : {n_tokens / t_ours:8.1f} tokens/s ({t_ours:.2f} s)")
        print(f"ratio fitrain / bare     : {t_bare / t_ours:.3f}")


if __name__ == "__main__":
    main()
