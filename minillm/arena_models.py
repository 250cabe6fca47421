"""Checkpoints as arena players and judges (lesson 12).

What it builds:
- `ModelAnswerer`: a checkpoint -> `answer(item) -> text` for TinyWorld items, batched
  over items with `generation.generate_batch`. An SFT (chat) model gets the chat prompt
  of `sft.render_chat` and stops at the end-of-turn token; a pretrained model gets the
  k-shot plain-text prompt of `instruct.kshot_prompt` and stops at a newline (fewer
  shots where k do not fit the context: `shortened` counts them).
- `stream_tokens` / `decode_stream` / `stream_answerer`: the web arena's answerer
  (`prompt -> Iterator[str]`), one token at a time through the KV cache, decoded with
  an incremental UTF-8 decoder so a character split across tokens is never shown half.
- AI judges: `model_judge` asks a model which of two answers is better and compares
  the log-probs of the continuations "A" and "B" (no free text to parse);
  `scorer_judge` turns any `score(item, answer) -> float` into a judge: a chat model's
  answer likelihood (`likelihood_scorer`) or lesson 10's reward model (`reward_scorer`).

- `parse_spec` / `build_answerers`: 'PATH[:Kshot][:t=T]' names a player (a checkpoint,
  how it is prompted and sampled); `course_items`: held-out items whose chat prompt fits.

Left out: sampling several answers per model, judges that explain their verdict
(MT-Bench's chain-of-thought judging), reference-guided judging.
"""

from __future__ import annotations

import codecs
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from minillm.checkpoint import Run, load_run
from minillm.evaluate import choice_logprobs, format_example
from minillm.generation import generate_batch, sample_next
from minillm.instruct import kshot_prompt, qa_conversation
from minillm.sft import ChatTemplate, render_chat
from minillm.utils import MiniLLMError

TEMPLATE = ChatTemplate()
SHIPPED = Path(__file__).resolve().parent.parent / "data" / "checkpoints"


def is_chat(run: Run) -> bool:
    """True when the checkpoint's tokenizer has the chat tokens (an SFT model)."""
    return run.tokenizer is not None and all(t in run.tokenizer.special_tokens for t in TEMPLATE.tokens())


def open_run(path: str | Path | Run) -> Run:
    """A `Run` from a run folder, a checkpoint file, 'sft'/'pretrained' (shipped) or a Run."""
    if isinstance(path, Run):
        return path
    p = Path(path)
    if not p.exists() and (SHIPPED / str(path)).is_dir():
        p = SHIPPED / str(path)
    if not p.exists():
        raise MiniLLMError(f"no checkpoint at {path} (give a run folder, a ckpt.pt, 'sft' or 'pretrained')")
    run = load_run(p)
    if run.tokenizer is None:
        raise MiniLLMError(f"{p} has no tokenizer.json beside its checkpoint")
    return run


def _item_key(item: dict) -> tuple[str, str]:
    return item["story"], item.get("prompt") or item["question"]


@dataclass
class ModelAnswerer:
    """A checkpoint answering TinyWorld items; answers are cached per item (the arena asks
    the same model about the same item in several battles). Sampled answers: row i of a
    batch draws from seed + i (`generate_batch`), so they depend on the order items come in."""

    run: Run
    shots: int | None = None          # None: chat prompt (needs the chat tokens); k: k-shot plain text
    temperature: float = 0.0          # 0 = greedy
    max_new_tokens: int = 16
    seed: int = 0
    batch_size: int = 32
    shortened: int = 0                # prompts cut to fit the context (fewer shots or oldest tokens)
    cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.shots is None and not is_chat(self.run):
            raise MiniLLMError(f"{self.run.meta.get('path')} has no chat tokens: give it k-shot prompts (shots=1..3)")
        tok = self.run.tokenizer
        self.stops = [tok.special_tokens[TEMPLATE.end]] if self.shots is None else tok.encode("\n")

    def prompt_ids(self, item: dict) -> list[int]:
        """The prompt's token ids, cut (fewer shots, or the oldest tokens) to leave room for the answer."""
        tok, room = self.run.tokenizer, self.run.config.block_size - self.max_new_tokens
        if self.shots is None:
            ids, _ = render_chat(qa_conversation(item, False), tok, TEMPLATE, add_generation_prompt=True)
            if len(ids) > room:
                self.shortened += 1
                ids = ids[-room:]
            return ids
        for k in range(self.shots, -1, -1):   # the same shots for the same item, whatever else is asked
            ids = tok.encode(kshot_prompt(item, k, random.Random(f"{self.seed}/{_item_key(item)}")))
            if len(ids) <= room:
                self.shortened += k < self.shots
                return ids
        self.shortened += 1
        return ids[-room:]

    def answer_many(self, items: list[dict]) -> list[str]:
        """Answers to `items` (batched; cached ones are not regenerated)."""
        todo = list({_item_key(it): it for it in items if _item_key(it) not in self.cache}.values())
        tok = self.run.tokenizer
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            rows = generate_batch(self.run.model, [self.prompt_ids(it) for it in chunk], self.max_new_tokens,
                                  temperature=self.temperature, stop_ids=self.stops, seed=self.seed)
            for it, new in zip(chunk, rows):
                self.cache[_item_key(it)] = tok.decode(new).split("\n")[0].strip()
        return [self.cache[_item_key(it)] for it in items]

    def __call__(self, item: dict) -> str:
        return self.answer_many([item])[0]


# ---------------------------------------------------------------------------------
# Streaming, for the web arena
# ---------------------------------------------------------------------------------

@torch.no_grad()
def stream_tokens(model, ids: list[int], max_new_tokens: int, *, temperature: float = 0.0,
                  top_k: int | None = None, top_p: float | None = None, stop_ids: Iterable[int] = (),
                  seed: int | None = None) -> Iterator[int]:
    """New token ids one at a time, through the KV cache (prefill once, then one token per
    step); stops at a stop id (not yielded), after max_new_tokens, or when the context is full.
    Greedy output equals `generate_batch(model, [ids], ...)[0]` while the context has room."""
    if not ids:
        raise MiniLLMError("the prompt is empty")
    device, bs = next(model.parameters()).device, model.config.block_size
    stops = {int(s) for s in stop_ids}
    gen = None if seed is None else torch.Generator(device=device).manual_seed(int(seed))
    ids = ids[-bs:]
    cache = model.new_cache(1)
    x = torch.tensor([ids], dtype=torch.long, device=device)          # (1, T) the prefill
    n = len(ids)
    for _ in range(max_new_tokens):
        logits, _ = model(x, cache=cache)                              # (1, T, V)
        token = int(sample_next(logits[:, -1], temperature, top_k, top_p, gen))
        if token in stops:
            return
        yield token
        n += 1
        if n >= bs:                                                    # no room for another position
            return
        x = torch.tensor([[token]], dtype=torch.long, device=device)  # (1, 1)


def decode_stream(tokenizer, tokens: Iterable[int]) -> Iterator[str]:
    """Text pieces of a token stream: bytes go through an incremental UTF-8 decoder, so a
    character whose bytes span two tokens comes out whole, with the second token.
    "".join of the pieces equals tokenizer.decode(all tokens)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for t in tokens:
        piece = decoder.decode(tokenizer.decode_bytes([t]))
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def stream_answerer(path: str | Path | Run, shots: int | None = None, temperature: float = 0.0,
                    max_new_tokens: int = 24, seed: int = 0) -> Callable[[str], Iterator[str]]:
    """`prompt -> Iterator[str]` for `arena_server.Arena`: a chat model answers the prompt as a
    user turn; a pretrained one continues 'prompt / Answer:' up to a newline."""
    run = open_run(path)
    chat = shots is None and is_chat(run)
    tok = run.tokenizer
    stops = [tok.special_tokens[TEMPLATE.end]] if chat else tok.encode("\n")

    def answer(prompt: str) -> Iterator[str]:
        if chat:
            ids, _ = render_chat([dict(role="user", content=prompt)], tok, TEMPLATE, add_generation_prompt=True)
        else:
            story, _, question = prompt.rpartition("\n")
            ids = tok.encode(format_example(story, question) if story else f"Question: {question}\nAnswer:")
        ids = ids[-(run.config.block_size - 1):]
        tokens = stream_tokens(run.model, ids, max_new_tokens, temperature=temperature, stop_ids=stops, seed=seed)
        yield from decode_stream(tok, tokens)

    return answer


# ---------------------------------------------------------------------------------
# AI judges
# ---------------------------------------------------------------------------------

def judge_prompt(item: dict, answer_a: str, answer_b: str) -> str:
    """The text an AI judge reads: the story, the question, both answers, the request."""
    return (f"{item['story']}\nQuestion: {item.get('prompt') or item['question']}\n"
            f"Answer A: {answer_a}\nAnswer B: {answer_b}\nWhich answer is better, A or B?")


def model_judge(path: str | Path | Run, margin: float = 0.0) -> Callable[[dict, str, str], str]:
    """An AI judge: log p(" A") vs log p(" B") after `judge_prompt` (as a user turn for a chat
    model, followed by 'Better:' for a pretrained one); within `margin` nats it is a tie.
    A prompt longer than the context loses its oldest tokens (the start of the story)."""
    run = open_run(path)
    tok, chat = run.tokenizer, is_chat(run)
    choices = [tok.encode(" A"), tok.encode(" B")]
    room = run.config.block_size - max(len(c) for c in choices)

    def judge(item: dict, answer_a: str, answer_b: str) -> str:
        text = judge_prompt(item, answer_a, answer_b)
        if chat:
            ids, _ = render_chat([dict(role="user", content=text)], tok, TEMPLATE, add_generation_prompt=True)
        else:
            ids = tok.encode(text + "\nBetter:")
        lp_a, lp_b = choice_logprobs(run.model, ids[-room:], choices)
        return "tie" if abs(lp_a - lp_b) <= margin else ("a" if lp_a > lp_b else "b")

    return judge


def likelihood_scorer(path: str | Path | Run) -> Callable[[dict, str], float]:
    """score(item, answer) = the mean log-prob per token a chat model gives the answer (and its
    end token) after the item's chat prompt: "would I have said this?", a reward model for free."""
    run = open_run(path)
    if not is_chat(run):
        raise MiniLLMError(f"{run.meta.get('path')} has no chat tokens: a likelihood judge needs a chat model")
    tok, end = run.tokenizer, run.tokenizer.special_tokens[TEMPLATE.end]

    def score(item: dict, answer: str) -> float:
        ids, _ = render_chat(qa_conversation(item, False), tok, TEMPLATE, add_generation_prompt=True)
        body = tok.encode(" " + answer.strip(), disallowed_special=()) + [end]
        room = run.config.block_size + 1 - len(body)
        if room < 1:
            body, room = body[:run.config.block_size - 1], 1
        return choice_logprobs(run.model, ids[-room:], [body])[0] / len(body)

    return score


def reward_scorer(folder: str | Path) -> Callable[[dict, str], float]:
    """score(item, answer) = the reward a trained reward model (lesson 10's `reward.save_reward_model`
    folder) gives the answer after the item's chat prompt."""
    from minillm import reward       # deferred: only this judge needs lesson 10's reward model
    from minillm.tokenizer import Tokenizer

    rm, tok = reward.load_reward_model(folder), Tokenizer.load(Path(folder) / "tokenizer.json")

    def score(item: dict, answer: str) -> float:
        pair = dict(story=item["story"], question=item["question"], prompt=item.get("prompt"),
                    chosen=answer, rejected=answer)
        return float(reward.score_pairs(rm, tok, [pair])[0][0])

    return score


def scorer_judge(score: Callable[[dict, str], float], margin: float = 0.0) -> Callable[[dict, str, str], str]:
    """A judge from a scorer (a reward model: `score(item, answer) -> float`): the higher score
    wins, a tie within `margin`. A scorer that fails or returns a non-number is an error."""
    def judge(item: dict, answer_a: str, answer_b: str) -> str:
        s_a, s_b = float(score(item, answer_a)), float(score(item, answer_b))
        if s_a != s_a or s_b != s_b:
            raise MiniLLMError(f"the scorer returned NaN for {answer_a!r} or {answer_b!r}")
        return "tie" if abs(s_a - s_b) <= margin else ("a" if s_a > s_b else "b")

    return judge


# ---------------------------------------------------------------------------------
# The course arena
# ---------------------------------------------------------------------------------

DEFAULT_MODELS = ("pretrained:1shot", "pretrained:3shot", "sft", "sft:t=0.7", "sft:t=1.5")


@dataclass(frozen=True)
class ModelSpec:
    """`PATH[:Kshot][:t=T]`: a checkpoint, how it is prompted and sampled; the name is the spec."""

    name: str
    path: str
    shots: int | None      # None: the chat prompt (a checkpoint with chat tokens)
    temperature: float


def parse_spec(spec: str) -> ModelSpec:
    """'pretrained:2shot' -> ModelSpec('pretrained:2shot', 'pretrained', 2, 0.0)."""
    path, *opts = spec.strip().split(":")
    shots, temperature = None, 0.0
    for opt in opts:
        if opt.endswith("shot") and opt[:-4].isdigit():
            shots = int(opt[:-4])
        elif opt.startswith("t="):
            try:
                temperature = float(opt[2:])
            except ValueError:
                raise MiniLLMError(f"{spec!r}: temperature {opt[2:]!r} is not a number") from None
        else:
            raise MiniLLMError(f"{spec!r}: unknown option {opt!r} (use PATH[:Kshot][:t=T])")
    if not path:
        raise MiniLLMError(f"{spec!r} names no checkpoint")
    return ModelSpec(spec.strip(), path, shots, temperature)


def build_answerers(specs: Iterable[str], max_new_tokens: int = 8, seed: int = 0) -> dict[str, ModelAnswerer]:
    """{name: ModelAnswerer}; each checkpoint is loaded once. A model without chat tokens and
    no ':Kshot' gets 1-shot prompts."""
    runs: dict[str, Run] = {}
    out = {}
    for spec in map(parse_spec, specs):
        if spec.name in out:
            raise MiniLLMError(f"model {spec.name!r} is named twice")
        run = runs.setdefault(spec.path, open_run(spec.path))
        shots = spec.shots if spec.shots is not None or is_chat(run) else 1
        out[spec.name] = ModelAnswerer(run, shots, spec.temperature, max_new_tokens, seed)
    if len(out) < 2:
        raise MiniLLMError(f"an arena needs at least two models, got {sorted(out)}")
    return out


def course_items(n: int, seed: int = 0, max_new_tokens: int = 8) -> list[dict]:
    """`n` held-out QA items (validation stories, trained phrasings) whose chat prompt fits the
    shipped SFT model's context with room for the answer."""
    from minillm import world
    from minillm.instruct import instruction_items

    run = open_run("sft")
    tok, bs = run.tokenizer, run.config.block_size
    stories = world.load_split("val").splitlines()
    rng = random.Random(f"course-arena/{seed}")
    items = [it for it in instruction_items(stories[:max(4 * n, 50)], "seen", seed=seed)
             if len(render_chat(qa_conversation(it, False), tok, TEMPLATE, add_generation_prompt=True)[0])
             + max_new_tokens <= bs]
    if len(items) < n:
        raise MiniLLMError(f"only {len(items)} validation items fit the context, asked for {n}")
    return rng.sample(items, n)
