"""`minillm generate`: lesson 03: sample text from a run folder, a checkpoint or a Hugging Face model.

The model and ITS tokenizer are loaded together: a minillm run folder or `ckpt.pt`
through `minillm.checkpoint.load_run` (the tokenizer.json saved with it), a Hugging
Face name or model folder through `minillm.interop` (that model's own tokenizer, so a
LLaMA checkpoint is never tokenised with GPT-2's vocabulary).
"""

from __future__ import annotations

import argparse
import math
import os

HELP = "lesson 03: sample text from a run folder, a checkpoint or a Hugging Face model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a run folder (ckpt.pt + tokenizer.json), a ckpt .pt file, a Hugging Face model "
                             "folder, or a Hugging Face name such as gpt2")
    parser.add_argument("--prompt", default="Once upon a time", help="text to continue")
    parser.add_argument("--special", action="store_true",
                        help="turn special-token strings in the prompt (e.g. <|endoftext|>) into their ids; "
                             "by default they are plain text")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k likeliest tokens")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass")
    parser.add_argument("--seed", type=int, default=None, help="seed for repeatable samples")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")


def _is_minillm_run(path: str) -> bool:
    return os.path.isfile(path) or path.endswith(".pt") or os.path.isfile(os.path.join(path, "ckpt.pt"))


def _looks_local(path: str) -> bool:
    """A path on this machine rather than a Hugging Face name ('gpt2', 'org/model')."""
    if path.startswith(("/", "./", "../", "~")) or path.endswith((".pt", ".json", ".bin", ".safetensors")):
        return True
    return "/" in path and os.path.isdir(path.split("/", 1)[0])


def load_model_and_tokenizer(path: str, device):
    """(model in eval mode, tokenizer) for any of the --checkpoint forms."""
    from minillm.utils import MiniLLMError

    if _is_minillm_run(path):
        from minillm import checkpoint  # deferred: torch import (start-up speed)

        run = checkpoint.load_run(path, device=device)
        if run.tokenizer is None:
            raise MiniLLMError(f"{path!r} has no tokenizer.json beside its checkpoint: "
                               f"generate needs the tokenizer the model was trained with")
        return run.model, run.tokenizer
    if not os.path.exists(path) and _looks_local(path):   # a typo, not a Hugging Face name: say so
        raise MiniLLMError(f"no checkpoint file or run folder {path!r}")
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise MiniLLMError(f"{path!r} is neither a minillm run folder (ckpt.pt) nor a Hugging Face "
                           f"model folder (config.json)")
    from minillm import interop  # deferred: torch import (start-up speed); transformers is optional

    model = interop.from_pretrained(path).to(device).eval()
    return model, interop.hf_tokenizer(path)


def run(args: argparse.Namespace) -> int:
    import torch  # deferred: start-up speed

    from minillm.device import pick_device
    from minillm.generation import generate_batch
    from minillm.utils import MiniLLMError

    if not math.isfinite(args.temperature):
        raise MiniLLMError(f"--temperature must be a finite number >= 0 (0 = greedy), got {args.temperature}")
    if args.seed is not None and args.seed < 0:
        raise MiniLLMError(f"--seed must be a non-negative integer, got {args.seed}")
    device = pick_device(args.device)
    model, tok = load_model_and_tokenizer(args.checkpoint, device)
    ids = tok.encode(args.prompt, allowed_special="all" if args.special else "none", disallowed_special=())
    if not ids:
        raise MiniLLMError("the prompt is empty after tokenization")
    stop = [tok.eot_id] if tok.eot_id is not None else []
    with torch.no_grad():
        new = generate_batch(model, [ids], args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                             top_p=args.top_p, seed=args.seed, stop_ids=stop)[0]
    print(tok.decode(ids + new))
    return 0
