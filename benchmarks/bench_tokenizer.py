"""Benchmark lesson 01's tokenizer against the tools a user would pick instead.

One run prints, per corpus, our figure beside Hugging Face `tokenizers` (Rust),
tiktoken (Rust, fed our vocabulary through `Tokenizer.to_tiktoken`) and our own
plain reference trainer:

* training time to `--vocab-size` ids (default 4096);
* the plain reference trainer's time for the same vocabulary, extrapolated
  linearly from its first `--reference-merges` merges (every merge rescans the
  corpus; the first ones see the longest sequences, so this overestimates, about
  2x on TinyWorld); `--full-reference` runs it to the end (minutes);
* encode throughput (MB/s) of the whole text as one string, ours with a cold
  and a warm pre-token cache.

Corpora: Python's own `pydoc_data` topics text (ships with every Python) and a
1.1 MB slice of TinyWorld's train split. Run:

    python benchmarks/bench_tokenizer.py            # about a minute on 2 cores
    RAYON_NUM_THREADS=2 python benchmarks/bench_tokenizer.py --corpus pydoc
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from minillm import world
from minillm.tokenizer import ENDOFTEXT, Tokenizer, train_bpe_reference


def corpus(name: str) -> str:
    if name == "pydoc":
        import pydoc_data.topics as topics

        return "\n".join(topics.topics[k] for k in sorted(topics.topics))
    return world.load_split("train")[:1_100_000]


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def hf_train(text: str, vocab_size: int):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[ENDOFTEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # lines, as HF's docs feed it (one huge string would be pre-tokenized on one thread)
    tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return tok


def bench(name: str, vocab_size: int, reference_merges: int, full_reference: bool) -> None:
    text = corpus(name)
    mb = len(text.encode()) / 1e6
    print(f"\n## {name}: {mb:.2f} MB, vocab {vocab_size}, GPT-2 split pattern for all (HF's ByteLevel uses it)")
    rows = []

    t_ours, tok = timed(lambda: Tokenizer.train(text, vocab_size, pattern="gpt2"))
    rows.append(("train", "minillm fast trainer (pure Python)", f"{t_ours:.2f} s", f"{len(tok.merges)} merges"))
    n_ref = len(tok.merges) if full_reference else min(reference_merges, len(tok.merges))
    t_ref, ref = timed(lambda: train_bpe_reference(text, 256 + n_ref + 1, "gpt2"))
    assert list(ref.merges) == list(tok.merges)[:n_ref], "reference and fast trainer disagree"
    t_ref_all = t_ref * len(tok.merges) / n_ref
    # early merges rescan the longest sequences, so a linear extrapolation overestimates
    # (about 2x for TinyWorld at vocab 512: 138.6 s measured vs ~300 s extrapolated)
    how = "measured" if n_ref == len(tok.merges) else f"extrapolated from {n_ref} merges (an overestimate)"
    rows.append(("train", "minillm reference trainer (plain BPE)", f"{t_ref_all:.1f} s",
                 f"{how}; fast is {t_ref_all / t_ours:.0f}x faster"))
    try:
        t_hf, hf = timed(lambda: hf_train(text, vocab_size))
        rows.append(("train", "HF tokenizers (Rust)", f"{t_hf:.2f} s",
                     f"ours / HF = {t_ours / t_hf:.1f}x; RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all')}"))
    except ImportError:
        hf = None

    tok._cache.clear()
    t_cold, ids = timed(lambda: tok.encode(text))
    t_warm, _ = timed(lambda: tok.encode(text), repeat=3)
    rows.append(("encode", "minillm, cold cache (pure Python)", f"{mb / t_cold:.2f} MB/s", f"{len(text.encode()) / len(ids):.2f} bytes/token"))
    rows.append(("encode", "minillm, warm cache (pure Python)", f"{mb / t_warm:.2f} MB/s", ""))
    if hf is not None:
        t_hf_enc, enc = timed(lambda: hf.encode(text), repeat=3)
        rows.append(("encode", "HF tokenizers, one string", f"{mb / t_hf_enc:.2f} MB/s", f"{len(text.encode()) / len(enc.ids):.2f} bytes/token"))
        lines = text.splitlines(keepends=True)
        t_hf_b, _ = timed(lambda: hf.encode_batch(lines), repeat=3)
        rows.append(("encode", "HF tokenizers, encode_batch(lines)", f"{mb / t_hf_b:.2f} MB/s", "parallel over lines"))
    try:
        enc_tt = tok.to_tiktoken()
        t_tt, tt_ids = timed(lambda: enc_tt.encode_ordinary(text), repeat=3)
        assert tt_ids == ids, "tiktoken with our ranks gives different ids"
        rows.append(("encode", "tiktoken with our ranks (to_tiktoken)", f"{mb / t_tt:.2f} MB/s", "ids identical to ours"))
        t_tt_b, _ = timed(lambda: enc_tt.encode_ordinary_batch(text.splitlines(keepends=True)), repeat=3)
        rows.append(("encode", "tiktoken, encode_ordinary_batch(lines)", f"{mb / t_tt_b:.2f} MB/s", "threads over lines"))
    except ImportError:
        pass

    w = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"| {'step':<{w[0]}} | {'tool':<{w[1]}} | {'result':<{w[2]}} | note |")
    print(f"| {'-' * w[0]} | {'-' * w[1]} | {'-' * w[2]} | --- |")
    for r in rows:
        print(f"| {r[0]:<{w[0]}} | {r[1]:<{w[1]}} | {r[2]:<{w[2]}} | {r[3]} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", choices=["pydoc", "tinyworld", "both"], default="both")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--reference-merges", type=int, default=16, help="merges the slow reference trainer runs")
    p.add_argument("--full-reference", action="store_true", help="run the reference trainer to the end (minutes)")
    args = p.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    for name in (["pydoc", "tinyworld"] if args.corpus == "both" else [args.corpus]):
        bench(name, args.vocab_size, args.reference_merges, args.full_reference)


if __name__ == "__main__":
    main()
