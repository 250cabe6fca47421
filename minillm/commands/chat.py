"""`minillm chat`: lesson 08: talk to a fine-tuned checkpoint in the terminal (tokens stream as they come).

    minillm chat                                    # the shipped SFT model, interactive
    minillm chat --prompt "$(head -1 data/tinyworld/val.txt)
    Where did the hero live?"                       # one turn, then exit
"""

from __future__ import annotations

import argparse
import sys

HELP = "lesson 08: chat with a fine-tuned checkpoint (streaming; --prompt for one turn)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="'sft' (the shipped model; the default) or a run folder made by `minillm sft`; "
                             "with --adapter: the adapter's base (default: the one the adapter records)")
    parser.add_argument("--adapter", default=None, help="a LoRA adapter folder (`minillm lora train`) put on the base")
    parser.add_argument("--prompt", default=None, help="answer this one user turn and exit")
    parser.add_argument("--system", default=None, help="an optional system turn at the start")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="most tokens per answer")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k likeliest tokens")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling")


def stream_answer(model, tok, conversation: list[dict], args, out=None) -> str:
    """Generate one assistant turn, printing text as it is decoded (to `out`, default the
    current sys.stdout, looked up at call time); returns the answer."""
    import torch

    from minillm.sft import ChatTemplate, render_chat

    out = out if out is not None else sys.stdout
    template = ChatTemplate()
    ids, _ = render_chat(conversation, tok, template, add_generation_prompt=True)
    ids = ids[-(model.config.block_size - 1):]  # keep the newest turns when the context is full
    end, new, shown = tok.special_tokens[template.end], [], ""
    for i in range(args.max_new_tokens):
        if len(ids) + len(new) >= model.config.block_size:
            break
        idx = torch.tensor([ids + new])
        nxt = model.generate(idx, 1, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                             seed=args.seed + i)[0, -1].item()
        if nxt == end:
            break
        new.append(nxt)
        text = tok.decode(new)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            out.write(text[len(shown):])
            out.flush()
            shown = text
    out.write(tok.decode(new)[len(shown):] + "\n")
    return tok.decode(new)


def run(args: argparse.Namespace) -> int:
    from minillm.instruct import load_shipped  # deferred: importing torch takes a second

    if args.adapter:
        from minillm.lora_runs import load_with_adapter  # deferred: importing torch takes a second

        model, tok, _ = load_with_adapter(args.checkpoint, args.adapter)
    else:
        model, tok = load_shipped(args.checkpoint or "sft")
    conversation = [dict(role="system", content=args.system)] if args.system else []
    if args.prompt is not None:
        stream_answer(model, tok, conversation + [dict(role="user", content=args.prompt)], args)
        return 0
    print("minillm chat: paste a TinyWorld story and a question; an empty line sends, Ctrl-D quits.")
    while True:
        lines = []
        try:
            while True:
                line = input("you> " if not lines else "...> ")
                if not line and lines:
                    break
                if line:
                    lines.append(line)
        except EOFError:
            print()
            return 0
        conversation.append(dict(role="user", content="\n".join(lines)))
        sys.stdout.write("model> ")
        conversation.append(dict(role="assistant", content=stream_answer(model, tok, conversation, args)))
