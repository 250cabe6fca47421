"""`minillm datapipe crawl|run|report`: lesson 13's data pipeline from the command line.

    minillm datapipe crawl --out crawl                          # 3000 pages in 8 shards + the truth, apart
    minillm datapipe run --input crawl/pages --out runs/pipe --workers 2
    minillm datapipe run --input crawl/pages --out runs/small --stages extract,langid,exact_dedup
    minillm datapipe report --run runs/pipe --truth crawl/truth.jsonl.gz --plot funnel.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from minillm.config import add_dataclass_arguments, dataclass_from_args
from minillm.utils import MiniLLMError, staged_folder

HELP = "lesson 13: make a synthetic crawl, run the data pipeline over its shards, report P/R per stage"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillm.datapipe import crawl, runner  # deferred: `minillm --help` does not import the lessons (start-up speed)

    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    c = sub.add_parser("crawl", formatter_class=fmt, help="generate the crawl (pages as JSONL.gz shards) and its truth")
    c.add_argument("--out", default="crawl", help="folder for pages/ and truth.jsonl.gz")
    add_dataclass_arguments(c, crawl.CrawlConfig)
    r = sub.add_parser("run", formatter_class=fmt, help="run the pipeline over shards (resumable: rerun to continue)")
    r.add_argument("--input", required=True, help="folder of *.jsonl / *.jsonl.gz shards")
    r.add_argument("--out", required=True, help="run folder: one sub-folder per stage, stats.json")
    add_dataclass_arguments(r, runner.RunConfig)
    p = sub.add_parser("report", formatter_class=fmt, help="the per-stage precision/recall and throughput table")
    p.add_argument("--run", required=True, help="a run folder written by `run`")
    p.add_argument("--truth", required=True, help="the crawl's truth.jsonl.gz")
    p.add_argument("--plot", help="also save the funnel plot to this image file")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from minillm.datapipe import crawl, runner  # deferred: see add_arguments

    if args.action == "crawl":
        cfg = dataclass_from_args(crawl.CrawlConfig, args)
        out = Path(args.out)
        with staged_folder(out) as tmp:   # a full disk or Ctrl-C leaves no crawl without its truth
            shards, _ = runner.write_crawl(tmp, cfg)
        print(f"wrote {cfg.pages} pages in {len(shards)} shards under {out / 'pages'}; truth: {out / 'truth.jsonl.gz'}")
    elif args.action == "run":
        cfg = dataclass_from_args(runner.RunConfig, args)
        if cfg.config and not cfg.stages:   # (both given: load_config says "either")
            read_text(cfg.config, "the pipeline config")   # missing, a folder, not UTF-8: one line
        stages = runner.load_config(cfg)
        if Path(args.input).exists() and not Path(args.input).is_dir():
            raise MiniLLMError(f"--input {args.input} is a file; give the folder of *.jsonl(.gz) shards")
        existed = Path(args.out).exists()
        out_folder(args.out)
        try:
            runner.run_sharded(args.input, args.out, stages, cfg.workers, log=print)
        except MiniLLMError:
            if not existed:      # a fresh run that failed: leave no empty stage folders behind
                remove_empty_folders(Path(args.out))
            raise
        print(f"done: {Path(args.out) / 'stats.json'}")
    else:
        return run_report(args)
    return 0


def read_text(path: str, what: str) -> str:
    """A UTF-8 file's text; missing, a folder or not UTF-8 is one MiniLLMError line."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MiniLLMError(f"{what} {path} is not UTF-8 text") from None
    except OSError as e:
        raise MiniLLMError(f"cannot read {what} {path}: {e.strerror or e}") from None


def out_folder(path: str) -> Path:
    """--out as a folder that can be written: a file there, or an unwritable place, is an error now."""
    from minillm.runfolder import prepare_out_dir  # deferred: see add_arguments

    return prepare_out_dir(path)


def remove_empty_folders(root: Path) -> None:
    """Remove `root` and the folders under it that hold no file (never a file)."""
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [root]:
        try:
            folder.rmdir()          # fails (and is kept) when not empty
        except OSError:
            pass


def read_stats(run_dir: str) -> list[tuple[str, dict]]:
    """The (stage, stats) records of a run's stats.json, checked."""
    stats_path = Path(run_dir) / "stats.json"
    if not stats_path.is_file():
        raise MiniLLMError(f"{stats_path} not found: run `minillm datapipe run` first (or rerun it to finish)")
    try:
        records = json.loads(read_text(str(stats_path), "the run's stats"))
    except json.JSONDecodeError as e:
        raise MiniLLMError(f"{stats_path} is not JSON ({e.msg}): rerun `minillm datapipe run`") from None
    ok = isinstance(records, list) and all(
        isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and isinstance(r[1], dict) for r in records)
    if not ok:
        raise MiniLLMError(f"{stats_path} is not a stats file of `minillm datapipe run` "
                           "(a list of [stage, stats] pairs)")
    return [tuple(r) for r in records]


def check_plot_path(path: str) -> str:
    """The image format of --plot (from its suffix), checked before any work."""
    import matplotlib.figure  # deferred: only --plot needs matplotlib

    fmt = Path(path).suffix.lstrip(".").lower()
    formats = matplotlib.figure.Figure().canvas.get_supported_filetypes()
    if fmt not in formats:
        raise MiniLLMError(f"--plot {path}: name an image file ending in one of "
                           f"{', '.join('.' + f for f in sorted(formats))}")
    if Path(path).is_dir():
        raise MiniLLMError(f"--plot {path} is a folder; name the image file")
    return fmt


def run_report(args: argparse.Namespace) -> int:
    from minillm.datapipe import metrics, runner  # deferred: see add_arguments
    from minillm.utils import atomic_write

    fmt = check_plot_path(args.plot) if args.plot else None
    records = read_stats(args.run)
    if not Path(args.truth).is_file():
        raise MiniLLMError(f"--truth {args.truth} is not a file: give the crawl's truth.jsonl.gz")
    try:
        rows = metrics.stage_table(records, runner.read_jsonl(args.truth))
    except (KeyError, TypeError) as e:
        raise MiniLLMError(f"{args.truth} does not belong to the run in {args.run} (a document id or field "
                           f"{e} is missing): give the truth of the crawl that run read") from None
    if args.plot:   # written before printing: a failed write leaves neither a table nor half an image
        fig = metrics.plot_funnel(rows)
        atomic_write(args.plot, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight"))
    print(json.dumps(rows, indent=1) if args.json else metrics.format_table(rows))
    if args.plot:
        print(f"funnel plot: {args.plot}")
    return 0
