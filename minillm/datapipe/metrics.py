"""Every stage held against the truth: precision, recall, throughput, the funnel.

Builds `stage_table(records, truth)` (one row per stage), `extraction_scores`
(line-level P/R of the extracted text against the page's true content lines),
`pii_scores` (exact counts of PII found vs inserted), `format_table` and
`plot_funnel`.

What a row means, for a stage that drops documents:

    precision = dropped documents that deserved it / dropped documents
    recall    = documents of the stage's target kinds that it dropped / those it saw

A document "deserves" to be dropped when its kind is bad (spam, gibberish,
another language ...) or when it is a copy (exact or near) and another member of
its cluster survives the stage. A stage's *target* is what it was built to catch
(`TARGETS`); other bad pages it drops count for its precision, not its recall.
Dedup stages' recall is over redundant copies: cluster members beyond the first.
"""

from __future__ import annotations

from collections import Counter

from minillm.datapipe import pipeline

BAD_KINDS = {"spam", "repeated", "short", "gibberish", "de", "pt"}
QUALITY = {"spam", "repeated", "short", "gibberish"}
COPY_KINDS = {"exact_dedup": {"good", "exact_dup"}, "minhash": {"good", "exact_dup", "near_dup"}}
TARGETS = {"langid": {"de", "pt"}, "exact_dedup": "copies", "minhash": "copies",
           "gopher_quality": QUALITY, "gopher_repetition": QUALITY, "c4": QUALITY,
           "classifier": BAD_KINDS, "perplexity": BAD_KINDS}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def stage_row(name: str, stats: dict, truth_by_id: dict, ids_in: list[str]) -> dict:
    """One row of the table: counts, bytes, docs/s, and P/R where the stage drops documents."""
    dropped = set(stats["dropped"])
    kept = [i for i in ids_in if i not in dropped]
    kept_clusters = Counter(truth_by_id[i]["cluster"] for i in kept)
    deserved = sum(1 for i in dropped if truth_by_id[i]["kind"] in BAD_KINDS or kept_clusters[truth_by_id[i]["cluster"]])
    row = dict(stage=name, docs_in=stats["docs_in"], docs_out=stats["docs_out"], mb_out=stats["bytes_out"] / 1e6,
               docs_per_s=_ratio(stats["docs_in"], stats["seconds"]), precision=_ratio(deserved, len(dropped)),
               recall=None)
    target = TARGETS.get(name)
    if target == "copies":
        kinds = COPY_KINDS[name]  # exact dedup is not asked to find near-duplicates
        good_in = [i for i in ids_in if truth_by_id[i]["kind"] in kinds]
        n_copies = len(good_in) - len({truth_by_id[i]["cluster"] for i in good_in})
        good_kept = [i for i in kept if truth_by_id[i]["kind"] in kinds]
        left = len(good_kept) - len({truth_by_id[i]["cluster"] for i in good_kept})
        row["recall"] = _ratio(n_copies - left, n_copies)
    elif target:
        hit = [i for i in ids_in if truth_by_id[i]["kind"] in target]
        row["recall"] = _ratio(sum(1 for i in hit if i in dropped), len(hit))
    return row


def stage_table(records: list[tuple[str, dict]], truth: list[dict]) -> list[dict]:
    """Rows for every stage of a run (`run_stages`' records), then a "final" row: precision =
    final documents that are good and the only one of their cluster, recall = good clusters kept."""
    by_id = {t["id"]: t for t in truth}
    ids, rows = [t["id"] for t in truth], []
    for name, stats in records:
        rows.append(stage_row(name, stats, by_id, ids))
        dropped = set(stats["dropped"])
        ids = [i for i in ids if i not in dropped]
    good_clusters = {t["cluster"] for t in truth if t["kind"] not in BAD_KINDS}
    final_clusters = Counter(by_id[i]["cluster"] for i in ids if by_id[i]["kind"] not in BAD_KINDS)
    rows.append(dict(stage="final", docs_in=len(truth), docs_out=len(ids), mb_out=rows[-1]["mb_out"] if rows else 0,
                     docs_per_s=None, precision=_ratio(len(final_clusters), len(ids)),
                     recall=_ratio(len(final_clusters), len(good_clusters))))
    return rows


def extraction_scores(docs: list[dict], truth: list[dict]) -> dict:
    """Line-level precision/recall of extraction: extracted lines that are true content lines,
    true content lines that were extracted (whitespace-normalised), over all pages."""
    by_id = {t["id"]: t for t in truth}
    tp = n_out = n_true = 0
    for d in docs:
        true = {" ".join(line.split()) for line in by_id[d["id"]]["content"]}
        got = {" ".join(line.split()) for line in d["text"].split("\n") if line.strip()}
        tp, n_out, n_true = tp + len(true & got), n_out + len(got), n_true + len(true)
    return dict(precision=_ratio(tp, n_out), recall=_ratio(tp, n_true))


def pii_scores(found: dict[str, list], truth: list[dict], ids: list[str] | None = None) -> dict:
    """Per PII type: inserted (in the pages seen), found, correct (exact value), and P/R."""
    seen = set(ids) if ids is not None else {t["id"] for t in truth}
    out = {}
    for t in truth:
        if t["id"] not in seen:
            continue
        true = Counter((k, v) for k, v in t["pii"])
        got = Counter((k, v) for k, v in found.get(t["id"], []))
        for kind in {k for k, _ in true} | {k for k, _ in got}:
            row = out.setdefault(kind, dict(inserted=0, found=0, correct=0))
            row["inserted"] += sum(c for (k, _), c in true.items() if k == kind)
            row["found"] += sum(c for (k, _), c in got.items() if k == kind)
            row["correct"] += sum(min(c, true[kv]) for kv, c in got.items() if kv[0] == kind)
    for row in out.values():
        row["precision"], row["recall"] = _ratio(row["correct"], row["found"]), _ratio(row["correct"], row["inserted"])
    return out


def line_removal_scores(before: list[dict], after: list[dict], truth: list[dict]) -> dict:
    """Line-level P/R of a stage that removes lines (line dedup, C4's line rules): removed lines
    that were not true content / removed lines; non-content lines removed / non-content lines seen."""
    by_id, kept = {t["id"]: t for t in truth}, {d["id"]: d for d in after}
    removed_bad = removed = bad_seen = 0
    for d in before:
        true = {" ".join(line.split()) for line in by_id[d["id"]]["content"]}
        lines = [" ".join(line.split()) for line in d["text"].split("\n") if line.strip()]
        left = set(kept[d["id"]]["text"].split("\n")) if d["id"] in kept else set()
        for line in lines:
            bad = line not in true
            bad_seen += bad
            if line not in left:
                removed, removed_bad = removed + 1, removed_bad + bad
    return dict(precision=_ratio(removed_bad, removed), recall=_ratio(removed_bad, bad_seen), lines_removed=removed)


def measure_pipeline(pages: list[dict], truth: list[dict], config: list | None = None
                     ) -> tuple[list[dict], list[list[dict]]]:
    """Run the stages one at a time and hold each against the truth.

    Returns (rows, outputs): `stage_table` rows, where the extract row gets the line-level
    P/R of extraction, the line-removing stages (line_dedup, c4) their line-level P/R and the
    pii row its exact counts; outputs[k] is the documents after stage k (for training on).
    """
    docs, records, outputs, extra = pages, [], [], {}
    for name, params in pipeline.parse_config(config or pipeline.DEFAULT_STAGES):
        before = docs
        docs, stats = pipeline.STAGES[name](docs, **params)
        records.append((name, stats))
        outputs.append(docs)
        if name == "extract":
            extra[len(records) - 1] = dict(extraction_scores(docs, truth), unit="lines")
        elif name in ("line_dedup", "c4"):
            extra[len(records) - 1] = dict(line_removal_scores(before, docs, truth), unit="lines")
        elif name == "pii":
            scores = pii_scores(stats["found"], truth, [d["id"] for d in before])
            correct = sum(r["correct"] for r in scores.values())
            extra[len(records) - 1] = dict(precision=_ratio(correct, sum(r["found"] for r in scores.values())),
                                           recall=_ratio(correct, sum(r["inserted"] for r in scores.values())),
                                           unit="PII spans", per_type=scores)
    rows = stage_table(records, truth)
    for k, e in extra.items():
        rows[k].update(line_precision=e["precision"], line_recall=e["recall"], unit=e["unit"])
        if "per_type" in e:
            rows[k]["pii"] = e["per_type"]
    return rows, outputs


def format_table(rows: list[dict]) -> str:
    """A Markdown table of `stage_table` rows."""
    f = lambda x, fmt: "-" if x is None else format(x, fmt)  # noqa: E731
    lines = ["| stage | docs in | docs out | MB out | docs/s | doc precision | doc recall | span/line P / R |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        spans = (f"{f(r['line_precision'], '.3f')} / {f(r['line_recall'], '.3f')} ({r['unit']})"
                 if "unit" in r else "")
        lines.append(f"| {r['stage']} | {r['docs_in']} | {r['docs_out']} | {r['mb_out']:.2f} | "
                     f"{f(r['docs_per_s'], '.0f')} | {f(r['precision'], '.3f')} | {f(r['recall'], '.3f')} | {spans} |")
    return "\n".join(lines)


def plot_funnel(rows: list[dict]):
    """Documents and megabytes left after each stage (the funnel); returns the figure."""
    import matplotlib.pyplot as plt  # deferred: plotting is optional for the pipeline

    rows = [r for r in rows if r["stage"] != "final"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = range(len(rows) + 1)
    ax.plot(x, [rows[0]["docs_in"]] + [r["docs_out"] for r in rows], "o-", label="documents")
    ax.set_xticks(list(x), ["crawl"] + [r["stage"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("documents left")
    ax2 = ax.twinx()
    ax2.plot(list(x)[1:], [r["mb_out"] for r in rows], "s--", color="tab:orange", label="MB of text")
    ax2.set_ylabel("MB of text left")
    ax.set_title("The funnel: what each stage keeps")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper right")
    fig.tight_layout()
    return fig
