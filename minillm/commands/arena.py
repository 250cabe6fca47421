"""`minillm arena`: lesson 12: models battle on held-out TinyWorld questions; a leaderboard.

    minillm arena --models pretrained:1shot,sft,sft:t=1 --judge oracle --battles 300 --out runs/arena
    minillm arena --judge ai:sft                       # an AI judge (asked in both orders)
    minillm arena --rate runs/arena/battles.jsonl      # refit the ratings of a battles file (web votes)
    minillm arena serve --models sft,pretrained --port 8000 --battles runs/arena/votes.jsonl

A model is `PATH[:Kshot][:t=T]`: 'sft', 'pretrained' or a run folder, optionally with
k-shot prompts (a model without chat tokens) and a sampling temperature (default greedy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "lesson 12: battles between checkpoints under a judge -> leaderboard (serve: a web arena)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="run", choices=("run", "serve"),
                        help="run: battles judged by --judge; serve: a local web page where a person votes")
    parser.add_argument("--models", default=None,
                        help="comma-separated PATH[:Kshot][:t=T] (default: the shipped pretrained 1- and 3-shot, "
                             "SFT greedy, at t=0.7 and t=1.5)")
    parser.add_argument("--judge", default="oracle", help="oracle, exact, ai:PATH (a model asked A or B), "
                                                           "lik:PATH (a chat model's answer likelihood) or "
                                                           "rm:FOLDER (a reward model, minillm rm train)")
    parser.add_argument("--battles", default=None,
                        help="run: how many battles (default 300); serve: the battles file votes go to")
    parser.add_argument("--items", type=int, default=60, help="held-out TinyWorld questions to battle on")
    parser.add_argument("--boot", type=int, default=100, help="bootstrap resamples for the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the items, pairs and sampling")
    parser.add_argument("--out", default="runs/arena", help="folder for battles.jsonl, leaderboard.md, leaderboard.png")
    parser.add_argument("--rate", default=None, metavar="FILE", help="only refit the leaderboard of this battles file")
    parser.add_argument("--port", type=int, default=8000, help="serve: the port on 127.0.0.1 (0: any free one)")


def model_list(args: argparse.Namespace) -> list[str]:
    from minillm.arena_models import DEFAULT_MODELS  # deferred: importing torch takes a second

    return [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(DEFAULT_MODELS)


def rate_file(path: str, models: list[str] | None, boot: int, seed: int) -> str:
    """The leaderboard of an existing battles file, restricted to `models` when given."""
    from minillm import arena, ratings  # deferred: start-up speed
    from minillm.utils import MiniLLMError

    records = arena.read_battles(path)
    if not records:
        raise MiniLLMError(f"{path} holds no battles (absent or empty)")
    if models:
        known = {r[k] for r in records for k in ("model_a", "model_b")}
        unknown = sorted(set(models) - known)
        if unknown:
            raise MiniLLMError(f"no battles of {', '.join(unknown)} in {path} (it has {', '.join(sorted(known))})")
        records = [r for r in records if r["model_a"] in models and r["model_b"] in models]
    games = arena.outcomes(records)
    return ratings.leaderboard(ratings.fit_bradley_terry(games), ratings.bootstrap_ratings(games, boot, seed=seed))


def wait(server) -> None:
    """Serve until Ctrl-C (tests replace this to make requests and shut the server down)."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def serve(args: argparse.Namespace) -> int:
    from minillm import arena_models, arena_server  # deferred: importing torch takes a second
    from minillm.utils import MiniLLMError

    models = model_list(args)
    if len(set(models)) < 2:
        raise MiniLLMError(f"an arena needs at least two models, got {models}")
    specs = [arena_models.parse_spec(m) for m in models]
    answerers = {s.name: arena_models.stream_answerer(s.path, s.shots, s.temperature, seed=args.seed) for s in specs}
    prompts = [f"{it['story']}\n{it['prompt']}" for it in arena_models.course_items(args.items, args.seed)]
    path = Path(args.battles or Path(args.out) / "votes.jsonl")
    server = arena_server.serve(arena_server.Arena(answerers, path, prompts, seed=args.seed), args.port)
    try:
        print(f"arena at http://127.0.0.1:{server.server_address[1]}/ (votes -> {path}); Ctrl-C stops", flush=True)
        wait(server)
    finally:
        server.server_close()
    return 0


def run(args: argparse.Namespace) -> int:
    from minillm import arena  # deferred: importing torch takes a second
    from minillm.utils import MiniLLMError

    if args.action == "serve":
        return serve(args)
    if args.rate:
        print(rate_file(args.rate, model_list(args) if args.models else None, args.boot, args.seed), end="")
        return 0
    try:
        n_battles = int(args.battles or 300)
    except ValueError:
        raise MiniLLMError(f"--battles must be a number of battles, got {args.battles!r}") from None
    if n_battles < 1 or args.items < 1:
        raise MiniLLMError("--battles and --items must be at least 1")
    models = model_list(args)
    if len(set(models)) < 2:
        raise MiniLLMError(f"an arena needs at least two models, got {models}")
    arena.make_judge(args.judge)   # an unknown judge fails before any model answers
    res = arena.course_arena(models, judges=(args.judge,), n_items=args.items, n_battles=n_battles,
                             n_boot=args.boot, seed=args.seed, log=print)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    battles = out / "battles.jsonl"
    battles.unlink(missing_ok=True)
    for record in res["battles"][args.judge]:
        arena.append_battle(battles, record)
    report = arena.course_report(res)
    (out / "leaderboard.md").write_text(report, encoding="utf-8")
    import matplotlib.pyplot as plt  # deferred: start-up speed

    fig = arena.plot_course(res)
    fig.savefig(out / "leaderboard.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(report)
    print(f"wrote {battles}, {out / 'leaderboard.md'}, {out / 'leaderboard.png'}")
    return 0
