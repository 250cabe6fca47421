"""Lesson 13 stages on hand-made documents, MinHash/LSH against their probability laws,
Gopher/C4 rules against hand-computed values, and the crawl's determinism."""

import math
import random

import numpy as np
import pytest

from minillm.datapipe import crawl, dedup, extract, langid, metrics, minhash, mixing, pii, pipeline, quality
from minillm.utils import MiniLLMError


def doc(i, text):
    return {"id": f"d{i}", "text": text}


STORY = ("Once upon a time, there was a kind fox named Ada. Ada lived near the lake and had two red cups. "
         "One day, Ada met Ben, a shy owl. Then Ada gave Ben one red cup. Now Ada had one and Ben had one. "
         "That evening, Ada and Ben sang a song. The end.")


# --- the crawl -------------------------------------------------------------------------

def test_crawl_is_identical_for_a_seed_and_truth_is_apart():
    a, ta = crawl.make_crawl(200, seed=3)
    b, tb = crawl.make_crawl(200, seed=3)
    assert a == b and ta == tb
    assert crawl.make_crawl(200, seed=4)[0] != a
    assert set(a[0]) == {"id", "url", "html"}           # the pipeline sees no labels
    kinds = {t["kind"] for t in ta}
    assert {"good", "exact_dup", "near_dup", "spam", "de", "pt"} <= kinds
    for p, t in zip(a, ta):                               # every exact copy is byte-identical to a page of its cluster
        if t["kind"] == "exact_dup":
            assert any(q["html"] == p["html"] for q, u in zip(a, ta) if u["cluster"] == t["cluster"] and u is not t)


def test_crawl_pii_is_in_the_page():
    pages, truth = crawl.make_crawl(300, seed=0)
    with_pii = [(p, t) for p, t in zip(pages, truth) if t["pii"]]
    assert with_pii
    for p, t in with_pii:
        for _, value in t["pii"]:
            assert value in p["html"]


# --- extraction ------------------------------------------------------------------------

def test_extract_drops_boilerplate_and_keeps_blocks():
    html = ('<html><head><title>T</title><style>p{}</style></head><body><nav>Home | About</nav>'
            '<div class="cookie-banner">We use cookies</div><p>Hello <b>there</b>,  friend.</p>'
            '<script>var x = 1;</script><div class="ad">Buy now</div><p>Bye &amp; thanks.</p>'
            '<footer>(c) 2024</footer></body></html>')
    assert extract.html_to_text(html) == "Hello there, friend.\nBye & thanks."


def test_extract_survives_malformed_and_binary_pages():
    assert extract.html_to_text("<p>unclosed <div><b>bold</p></span> tail") == "unclosed\nbold\ntail"
    assert extract.html_to_text(b"<p>caf\xe9 \xff ok</p>") == "caf\ufffd \ufffd ok"  # invalid UTF-8 is replaced
    docs, stats = extract.extract([{"id": "a", "html": "\x00\x01\x02binary\x00" * 10},
                                   {"id": "b", "html": "<p>fine text</p>"}, {"id": "c", "html": ""}])
    assert [d["id"] for d in docs] == ["b"] and stats["dropped"] == ["a", "c"]


def test_extraction_against_truth_on_the_crawl():
    pages, truth = crawl.make_crawl(150, seed=1)
    docs, _ = extract.extract(pages)
    s = metrics.extraction_scores(docs, truth)
    assert s["recall"] > 0.97 and s["precision"] > 0.6  # the unmarked boilerplate and titles stay (line dedup's job)


# --- language id -----------------------------------------------------------------------

def test_char_ngrams_hand_example():
    assert langid.char_ngrams("Ab", 2) == [" ", "a", "b", " ", " a", "ab", "b "]


def test_langid_on_fresh_text():
    model = langid.default_langid()
    rng = random.Random(99)
    for lang in ("de", "pt"):
        assert all(model.predict(crawl.foreign_story(rng, lang))[0] == lang for _ in range(20))
    assert model.predict(STORY) == ("en", pytest.approx(1.0, abs=1e-6))
    kept, stats = langid.langid_filter([doc(0, STORY), doc(1, crawl.foreign_story(rng, "de"))], model)
    assert [d["id"] for d in kept] == ["d0"] and stats["languages"] == {"en": 1, "de": 1}


# --- PII -------------------------------------------------------------------------------

def test_pii_masks_each_type_and_spares_decoys():
    text = ("Mail ada.lee7@post.example.com or call +1 555-234-5678. Posted from 192.168.0.1. "
            "Version 2.10.300.1, updated 2024-05-01, build 1.2.3.4.5.")
    masked, found = pii.mask_pii(text)
    assert masked == ("Mail |||EMAIL_ADDRESS||| or call |||PHONE_NUMBER|||. Posted from |||IP_ADDRESS|||. "
                      "Version 2.10.300.1, updated 2024-05-01, build 1.2.3.4.5.")
    assert found == [("EMAIL_ADDRESS", "ada.lee7@post.example.com"), ("PHONE_NUMBER", "+1 555-234-5678"),
                     ("IP_ADDRESS", "192.168.0.1")]


def _no_library_ipv4(monkeypatch):
    """No delegation: the regex fast path and the ipaddress module are off limits."""
    import ipaddress

    class Forbidden:
        def __getattr__(self, name):
            raise AssertionError("write the IPv4 check yourself")

    monkeypatch.setattr(pii, "IPV4_RE", Forbidden())
    monkeypatch.setattr(ipaddress, "ip_address", Forbidden().__getattr__)
    monkeypatch.setattr(ipaddress, "IPv4Address", Forbidden().__getattr__)


@pytest.mark.exercise("pii.ipv4")
def test_ipv4_reference_hand_examples(monkeypatch):
    _no_library_ipv4(monkeypatch)
    f = pii.ipv4_spans_reference
    assert f("from 10.0.0.1.") == [(5, 13)]
    text = "a 255.255.255.255 b 256.1.1.1 c 1.2.3 d 01.2.3.4 e 0.0.0.0"
    assert text.index("0.0.0.0") == 51
    assert f(text) == [(2, 17), (51, 58)]
    assert f("version 2.10.300.1 and 1.2.3.4.5") == []


@pytest.mark.exercise("pii.ipv4")
def test_ipv4_reference_equals_fast_path(monkeypatch):
    rng = random.Random(0)
    texts = []
    for _ in range(300):
        parts = [str(rng.choice([0, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256, 300, 999])) for _ in range(rng.choice([3, 4, 4, 5]))]
        texts.append(f"x {'.'.join(parts)}{rng.choice(['', '.', ' y', ',', '.5'])}")
    fast = [pii.ipv4_spans(t) for t in texts]
    _no_library_ipv4(monkeypatch)
    assert [pii.ipv4_spans_reference(t) for t in texts] == fast


def test_pii_scores_on_the_crawl():
    pages, truth = crawl.make_crawl(400, seed=2)
    docs, _ = extract.extract(pages)
    _, stats = pii.pii_mask(docs)
    scores = metrics.pii_scores(stats["found"], truth)
    for kind in ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS"):
        assert scores[kind]["precision"] == 1.0 and scores[kind]["recall"] == 1.0, (kind, scores[kind])


# --- exact and line dedup --------------------------------------------------------------

def test_exact_dedup_keeps_the_first_copy():
    docs = [doc(0, "a b"), doc(1, "c"), doc(2, "a  b"), doc(3, "a b\n")]
    kept, stats = dedup.exact_dedup(docs)
    assert [d["id"] for d in kept] == ["d0", "d1"] and stats["dropped"] == ["d2", "d3"]


def test_line_dedup_removes_lines_in_min_docs_documents():
    docs = [doc(i, f"story {i}.\nShare this story!") for i in range(3)] + [doc(3, "Share this story!"), doc(4, "x.\ny.")]
    kept, stats = dedup.line_dedup(docs, min_docs=3)
    assert [d["text"] for d in kept] == ["story 0.", "story 1.", "story 2.", "x.\ny."]
    assert stats["dropped"] == ["d3"] and stats["lines_removed"] == 4


# --- MinHash and LSH -------------------------------------------------------------------

def test_shingles_hand_example():
    assert minhash.shingles("A b a b", 2) == {b"a b", b"b a"}
    assert minhash.shingles("one two", 5) == {b"one two"}
    assert minhash.shingles("", 5) == set()


def _no_numpy_signature(monkeypatch):
    """No delegation: the NumPy fast path may not be called by the reference."""
    monkeypatch.setattr(minhash, "minhash_signature", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no fast path")))


@pytest.mark.exercise("minhash.signature")
def test_signature_reference_equals_fast_path(monkeypatch):
    perms = minhash.permutations(32, seed=5)
    texts = [STORY, "short text", "", " ".join(f"w{i}" for i in range(40))]
    fast = [minhash.minhash_signature(t, perms).tolist() for t in texts]
    _no_numpy_signature(monkeypatch)
    assert [minhash.minhash_signature_reference(t, perms) for t in texts] == fast
    assert minhash.minhash_signature_reference("", perms) == [minhash.MAX_HASH] * 32


@pytest.mark.exercise("minhash.signature")
def test_signature_hand_example(monkeypatch):
    _no_numpy_signature(monkeypatch)
    perms = np.array([[3], [7]], dtype=np.uint64)  # one hash function h(x) = (3x + 7) mod p & (2^32 - 1)
    xs = [minhash.hash32(s) for s in minhash.shingles("a b c d e f", 5)]
    want = min(((3 * x + 7) % minhash.MERSENNE) & minhash.MAX_HASH for x in xs)
    assert minhash.minhash_signature_reference("a b c d e f", perms) == [want]


def _pair(rng, n_shared, n_a, n_b):
    shared = {f"s{rng.random()}".encode() for _ in range(n_shared)}
    return shared | {f"a{rng.random()}".encode() for _ in range(n_a)}, shared | {f"b{rng.random()}".encode() for _ in range(n_b)}


def test_minhash_estimate_within_its_standard_error():
    # Over many pairs, (estimate - J) / sqrt(J(1-J)/k) has mean ~0 and sd ~1: the estimator is
    # unbiased with the binomial standard error. Tolerances: 4 standard errors of the mean / sd.
    rng, k = random.Random(0), 128
    perms = minhash.permutations(k, seed=2)
    z = []
    for _ in range(200):
        a, b = _pair(rng, rng.randrange(5, 60), rng.randrange(1, 40), rng.randrange(1, 40))
        sig = [minhash.minhash_signature(" ".join(x.decode() for x in sorted(s)), perms, n=1) for s in (a, b)]
        j = minhash.jaccard({x.lower() for x in a}, {x.lower() for x in b})
        z.append((minhash.estimate_jaccard(*sig) - j) / math.sqrt(j * (1 - j) / k))
    z = np.array(z)
    assert abs(z.mean()) < 4 / math.sqrt(len(z))
    assert 0.8 < z.std() < 1.2
    assert np.mean(np.abs(z) < 1.96) > 0.9


def test_lsh_candidate_probability_follows_the_s_curve():
    # Signatures with i.i.d. agreement probability s per entry (what MinHash gives for Jaccard s):
    # the fraction of candidate pairs must match 1 - (1 - s^r)^b within 4 binomial standard errors.
    rng = np.random.default_rng(0)
    bands, rows, n = 10, 4, 400
    for s in (0.3, 0.5, 0.6, 0.7, 0.9):
        base = rng.integers(0, 2**32, size=(n, bands * rows), dtype=np.uint64)
        other = np.where(rng.random((n, bands * rows)) < s, base, base + np.uint64(1))
        hits = 0
        for i in range(n):
            hits += (0, 1) in minhash.candidate_pairs(np.stack([base[i], other[i]]), bands, rows)
        p = float(minhash.lsh_probability(s, bands, rows))
        assert abs(hits / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9, (s, hits / n, p)
    assert minhash.lsh_threshold(14, 8) == pytest.approx((1 / 14) ** (1 / 8))


def _no_fast_lsh(monkeypatch):
    monkeypatch.setattr(minhash, "candidate_pairs", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no fast path")))
    monkeypatch.setattr(np, "unique", lambda *a, **k: (_ for _ in ()).throw(AssertionError("group by hand")))


@pytest.mark.exercise("minhash.lsh")
def test_lsh_reference_hand_example(monkeypatch):
    _no_fast_lsh(monkeypatch)
    sigs = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [0, 0, 3, 4], [5, 5, 5, 5]], dtype=np.uint64)
    assert minhash.candidate_pairs_reference(sigs, bands=2, rows=2) == {(0, 1), (0, 2)}
    assert minhash.candidate_pairs_reference(sigs, bands=1, rows=4) == set()


@pytest.mark.exercise("minhash.lsh")
def test_lsh_reference_equals_fast_path(monkeypatch):
    rng = np.random.default_rng(1)
    sigs = rng.integers(0, 3, size=(40, 12), dtype=np.uint64)  # few values: many collisions
    fast = minhash.candidate_pairs(sigs, 4, 3)
    _no_fast_lsh(monkeypatch)
    assert minhash.candidate_pairs_reference(sigs, 4, 3) == fast


def test_minhash_dedup_finds_near_duplicates():
    words = STORY.split()
    near = " ".join(words[:10] + ["quickly"] + words[11:])
    other = "A completely different page about the weather and the sea, written for a test today."
    kept, stats = minhash.minhash_dedup([doc(0, STORY), doc(1, other), doc(2, near)])
    assert [d["id"] for d in kept] == ["d0", "d1"] and stats["dropped"] == ["d2"]


def test_candidate_pairs_checks_the_signature_length():
    with pytest.raises(MiniLLMError, match="exceeds"):
        minhash.candidate_pairs(np.zeros((2, 10), dtype=np.uint64), 4, 3)


# --- Gopher and C4 ---------------------------------------------------------------------

def _no_counter(monkeypatch):
    monkeypatch.setattr(quality, "top_ngram_char_fraction", lambda *a: (_ for _ in ()).throw(AssertionError("no fast path")))
    monkeypatch.setattr(quality, "Counter", None)


@pytest.mark.exercise("quality.top_ngram")
def test_top_ngram_hand_examples(monkeypatch):
    _no_counter(monkeypatch)
    f = quality.top_ngram_char_fraction_reference
    assert f("a b a b", 2) == pytest.approx(6 / 7)       # "a b" twice, 3 characters each, over 7
    assert f("aa bb cc", 2) == pytest.approx(5 / 8)      # all 2-grams once: the first, "aa bb"
    assert f("one", 2) == 0.0


@pytest.mark.exercise("quality.top_ngram")
def test_top_ngram_reference_equals_fast_path(monkeypatch):
    rng = random.Random(3)
    texts = [" ".join(rng.choice(["a", "bb", "ccc", "the"]) for _ in range(rng.randrange(1, 30))) for _ in range(200)]
    fast = [[quality.top_ngram_char_fraction(t, n) for n in (2, 3, 4)] for t in texts]
    _no_counter(monkeypatch)
    for t, want in zip(texts, fast):
        got = [quality.top_ngram_char_fraction_reference(t, n) for n in (2, 3, 4)]
        # ties between equally frequent n-grams of different lengths may pick another; compare counts x length
        for n, g, w in zip((2, 3, 4), got, want):
            assert g == pytest.approx(w) or _tie(t, n), (t, n, g, w)


def _tie(text, n):
    from collections import Counter
    words = text.split()
    counts = Counter(zip(*(words[i:] for i in range(n))))
    top = max(counts.values())
    return sum(c == top for c in counts.values()) > 1


def test_gopher_quality_rules_fire_on_what_they_target():
    assert quality.gopher_quality_reasons(STORY) == []
    assert "gopher_word_count" in quality.gopher_quality_reasons("the and of to. " * 5)
    assert "gopher_stop_words" in quality.gopher_quality_reasons(" ".join(["cheap shoes online"] * 30))
    assert "gopher_alpha_words" in quality.gopher_quality_reasons(" ".join(["123 456 789 000 the and"] * 20))
    assert "gopher_symbol_ratio" in quality.gopher_quality_reasons(" ".join(["#tag the and word"] * 20))
    bullets = "\n".join(f"- item {i} the and" for i in range(60))
    assert "gopher_bullets" in quality.gopher_quality_reasons(bullets)


def test_gopher_repetition_hand_values():
    assert quality.dup_ngram_char_fraction("a b c a b c", 3) == pytest.approx(3 / 11)
    assert quality.top_ngram_char_fraction("x y x y z", 2) == pytest.approx(6 / 9)
    text = "\n".join(["Click here to win a prize!"] * 5 + [STORY])
    assert "gopher_dup_line" in quality.gopher_repetition_reasons(text)
    assert quality.gopher_repetition_reasons(STORY) == []


def test_c4_line_and_page_rules():
    page = "\n".join([STORY, "Menu", "Please enable JavaScript to view.", "This site uses cookies, ok.",
                      "Short line!", STORY.replace("Ada", "Eva")])
    cleaned, reason = quality.c4_clean(page)
    assert reason == "" and cleaned == "\n".join([STORY, STORY.replace("Ada", "Eva")])
    assert quality.c4_clean("One. Two. Three. Four.")[1] == "c4_few_sentences"
    assert quality.c4_clean(STORY + " lorem ipsum")[1] == "c4_lorem_ipsum"
    assert quality.c4_clean(STORY + " {x}")[1] == "c4_curly_bracket"


# --- mixing and the pipeline -----------------------------------------------------------

def test_mixing_reaches_its_weights():
    docs = [{"id": f"s{i}", "text": "s" * 99} for i in range(50)] + \
           [{"id": f"q{i}", "text": "Q: a? A: b.\nQ: c? A: d." + "q" * 76} for i in range(5)]
    tagged, stats = mixing.domain_tag(docs)
    assert stats["domains"] == {"stories": 50, "qa": 5}
    out, report = mixing.mix(tagged, {"stories": 0.5, "qa": 0.5}, total_bytes=4000)
    assert report["qa"]["realised"] >= 2000 and report["qa"]["epochs"] == pytest.approx(4.0)  # 20 picks of 5
    with pytest.raises(MiniLLMError):
        mixing.mix(tagged, {"code": 1.0}, 100)


def test_unknown_stage_is_one_clear_error():
    with pytest.raises(MiniLLMError, match="unknown stage 'dedupe'"):
        pipeline.parse_config(["extract", "dedupe"])
    with pytest.raises(MiniLLMError):
        pipeline.parse_config([])
    with pytest.raises(MiniLLMError, match="bad parameters"):
        pipeline.run_stages([{"id": "a", "html": "<p>x</p>"}], ["extract", {"stage": "line_dedup", "nope": 1}])


def test_pipeline_on_a_small_crawl_against_the_truth():
    pages, truth = crawl.make_crawl(400, seed=5)
    cfg = ["extract", "langid", "pii", "exact_dedup", "minhash", "line_dedup", "gopher_quality", "c4"]
    docs, records = pipeline.run_stages(pages, cfg)
    rows = {r["stage"]: r for r in metrics.stage_table(records, truth)}
    assert rows["langid"]["recall"] == 1.0 and rows["langid"]["precision"] == 1.0
    assert rows["exact_dedup"]["recall"] == 1.0 and rows["exact_dedup"]["precision"] == 1.0
    assert rows["minhash"]["recall"] > 0.6 and rows["minhash"]["precision"] == 1.0
    assert rows["final"]["precision"] > 0.95 and rows["final"]["recall"] > 0.95


# --- downstream -------------------------------------------------------------------------

def test_bits_per_byte_of_a_uniform_model_is_log2_vocab_times_tokens_per_byte():
    import torch

    from minillm.datapipe import downstream

    class Uniform(torch.nn.Module):
        def forward(self, idx):
            return torch.zeros(*idx.shape, 50), None  # (B, T, V): every token has p = 1/50

    ids = np.arange(1000) % 50
    got = downstream.bits_per_byte(Uniform(), ids, n_bytes=2500, block_size=64)
    assert got == pytest.approx(math.log2(50) * 1000 / 2500, rel=1e-6)


def test_downstream_table_runs_and_sits_above_the_floor():
    from minillm import world
    from minillm.datapipe import downstream

    clean = world.corpus_text(world.generate(200, seed=1, split="dp_test"))
    cfg = downstream.DownstreamConfig(steps=3, batch_size=4, block_size=32, n_embd=32, val_stories=20, vocab_size=300)
    rows, floor = downstream.downstream_table({"clean": clean, "noise": "zq xv " * 3000}, cfg)
    assert [r["dataset"] for r in rows] == ["clean", "noise"]
    assert all(r["bits_per_byte"] > floor > 0 for r in rows)
    assert "| clean |" in downstream.format_downstream(rows, floor)
