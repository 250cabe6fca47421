"""Lesson 13: the data pipeline, from a web crawl to training text, every stage measured.

A real crawl has no answer key, so nobody can say how well a filter works. Ours
does: `crawl.make_crawl` writes HTML pages whose good content is TinyWorld text
and keeps, apart from the pages, the truth about every page (duplicate of what,
which language, which PII where, which boilerplate). Each stage is a plain
function over documents (dicts with "id", "text", "url") that returns the kept
documents and its statistics; `pipeline.run_stages` chains them in memory,
`runner.run_sharded` runs the same stages over sharded JSONL files, and
`metrics` holds every stage against the truth.

    crawl      the synthetic crawl with ground truth
    extract    HTML -> text with the standard library's parser
    langid     a character n-gram naive Bayes language identifier
    pii        e-mail / phone / IPv4 masking
    dedup      exact document and line deduplication
    minhash    MinHash signatures + LSH banding (near-duplicates)
    quality    Gopher and C4 heuristic rules (published thresholds)
    modelfilter  hashed n-gram logistic regression and a CCNet-style perplexity filter
    mixing     domain tags and sampling weights
    pipeline   the stage registry and the in-memory pipeline
    runner     sharded, resumable, multi-process runner
    metrics    precision / recall / throughput against the truth, the funnel plot
    downstream pretrain the same tiny model on each stage's output
"""
