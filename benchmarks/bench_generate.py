"""Generation speed: our GPT with and without the KV cache, beside Hugging Face's generate.

A small GPT-2-style model (4 layers, width 128, 4 heads, vocab 512) continues a
16-token prompt by 64, 256 and 1024 tokens, greedily, batch 1. Printed from one
run: tokens/s without the cache (every step recomputes the whole prefix: O(T^2)
work), with our KV cache (one new query per step), and Hugging Face's
GPT2LMHeadModel.generate with the same weights (its own cache), when the interop
extra is installed. Also checks that all three produce the same tokens.

    python benchmarks/bench_generate.py            # 64 / 256 / 1024 new tokens
    python benchmarks/bench_generate.py --quick    # 64 / 256
"""

from __future__ import annotations

import argparse
import time

import torch

from minillm.model import GPT, GPTConfig

PROMPT = 16


def build(max_new: int) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=512, block_size=PROMPT + max_new, n_layer=4, n_head=4, n_embd=128)
    return GPT(cfg).eval()


def hf_twin(model: GPT):
    """The same weights in a Hugging Face GPT2LMHeadModel (None without transformers)."""
    try:
        import transformers
    except ImportError:
        return None
    from minillm.interop import load_hf_gpt2_state_dict

    c = model.config
    hf_cfg = transformers.GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                                     n_layer=c.n_layer, n_head=c.n_head, bos_token_id=None, eos_token_id=None,
                                     pad_token_id=0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    # Write our weights into HF's (Linear (out, in) -> Conv1D (in, out)), then check by loading them back.
    sd = hf.state_dict()
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name in sd:  # same names: ours mirror GPT-2's checkpoint
                sd[name].copy_(p.t() if name.endswith(conv1d) else p)
    check = load_hf_gpt2_state_dict(GPT(c), sd)
    assert all(torch.equal(a, b) for a, b in zip(check.state_dict().values(), model.state_dict().values()))
    return hf


def tokens_per_s(fn, new: int) -> tuple[float, torch.Tensor]:
    t = time.perf_counter()
    out = fn()
    return new / (time.perf_counter() - t), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    lengths = [64, 256] if args.quick else [64, 256, 1024]
    model = build(max(lengths))
    hf = hf_twin(model)
    prompt = torch.randint(0, 512, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    print(f"GPT-2 style, 4 layers, C=128, {model.num_parameters() / 1e6:.2f}M parameters, batch 1, greedy, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'new':>5} | {'no cache tok/s':>14} {'KV cache tok/s':>14} {'speed-up':>8} | {'HF generate tok/s':>17} | same tokens")
    with torch.no_grad():
        model.generate(prompt, 8)  # warm-up
        for new in lengths:
            slow, a = tokens_per_s(lambda: model.generate(prompt, new, temperature=0, use_cache=False), new)
            fast, b = tokens_per_s(lambda: model.generate(prompt, new, temperature=0, use_cache=True), new)
            if hf is not None:
                ref, c = tokens_per_s(lambda: hf.generate(prompt, max_new_tokens=new, min_new_tokens=new,
                                                          do_sample=False), new)
                same = torch.equal(a, b) and torch.equal(b, c)
                ref_s = f"{ref:>17.0f}"
            else:
                same, ref_s = torch.equal(a, b), f"{'(no transformers)':>17}"
            print(f"{new:>5} | {slow:>14.0f} {fast:>14.0f} {fast / slow:>7.1f}x | {ref_s} | {same}")


if __name__ == "__main__":
    main()
