"""PII masking: e-mail addresses, phone numbers and IPv4 addresses -> placeholders.

Builds `find_pii(text) -> [(type, start, end)]`, `mask_pii(text)` and the stage
`pii_mask(docs)`. Each match is replaced by a placeholder in the style of
datatrove's and Dolma's PII formatters, `|||EMAIL_ADDRESS|||`, `|||PHONE_NUMBER|||`,
`|||IP_ADDRESS|||`, so a model learns that something stood there but not what.

The patterns (regular expressions, the way production pipelines do it):

    e-mail   local@domain.tld          [\\w.+-]+@[\\w-]+(\\.[\\w-]+)+
    phone    +1 555-123-4567 and kin   optional +country, 3-3-4 digits with - . or space
    IPv4     four octets 0..255        not a version number like 2.10.300.1 (300 > 255)

IPv4 has two paths: `ipv4_spans_reference` validates each dotted candidate by
hand (the exercise), `IPV4_RE` does it in one regular expression with the octet
range spelled out; a test holds them equal. Left out: names and street addresses
(those need a named-entity model such as Presidio's), IPv6, credit-card checksums.
"""

from __future__ import annotations

import re
import time
from collections import Counter

from minillm.datapipe.base import stage_stats

EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}(?!\d)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not glued to more digits or dots on either side: "2.10.300.1" must not yield "10.30.0.1".
IPV4_RE = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d]|\.\d)")
PLACEHOLDER = "|||{}|||"
_CANDIDATE = re.compile(r"[\d.]+")


def ipv4_spans_reference(text: str) -> list[tuple[int, int]]:
    """(start, end) of every IPv4 address in `text`, checked by hand.

    A candidate is a maximal run of digits and dots (strip a trailing sentence dot);
    it is an address when it has exactly four parts, each 1-3 digits, value <= 255,
    and no leading zero (except "0" itself).
    Example: `ipv4_spans_reference("from 10.0.0.1.")` -> [(5, 13)]; "2.10.300.1" -> [].
    """
    ### BEGIN SOLUTION name=pii.ipv4 points=2
    ### HINT: split each run of digits and dots on "."; when are four parts a valid address?
    spans = []
    for m in _CANDIDATE.finditer(text):
        start, run = m.start(), m.group()
        run = run.rstrip(".")  # "Posted from 1.2.3.4." ends a sentence
        parts = run.split(".")
        if len(parts) != 4 or run.startswith("."):
            continue
        if all(p.isdigit() and len(p) <= 3 and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts):
            spans.append((start, start + len(run)))
    return spans
    ### END SOLUTION


def ipv4_spans(text: str) -> list[tuple[int, int]]:
    """The fast path: the same spans from one regular expression."""
    return [m.span() for m in IPV4_RE.finditer(text)]


def find_pii(text: str) -> list[tuple[str, int, int]]:
    """Every PII match as (type, start, end), sorted, overlaps resolved left to right.

    Example: `find_pii("mail a@b.org")` -> [('EMAIL_ADDRESS', 5, 12)].
    """
    found = [("EMAIL_ADDRESS", *m.span()) for m in EMAIL_RE.finditer(text)]
    found += [("IP_ADDRESS", s, e) for s, e in ipv4_spans(text)]
    found += [("PHONE_NUMBER", *m.span()) for m in PHONE_RE.finditer(text)]
    found.sort(key=lambda t: (t[1], -t[2]))
    out, end = [], -1
    for kind, s, e in found:
        if s >= end:
            out.append((kind, s, e))
            end = e
    return out


def mask_pii(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(masked text, [(type, value found)]). Example: "ip 1.2.3.4" -> ("ip |||IP_ADDRESS|||", ...)."""
    pieces, found, pos = [], [], 0
    for kind, s, e in find_pii(text):
        pieces += [text[pos:s], PLACEHOLDER.format(kind)]
        found.append((kind, text[s:e]))
        pos = e
    pieces.append(text[pos:])
    return "".join(pieces), found


def pii_mask(docs: list[dict]) -> tuple[list[dict], dict]:
    """Stage: mask PII in every document (none is dropped). Stats add counts per type and
    `found` = {doc id: [(type, value)]} for the metrics."""
    t0 = time.perf_counter()
    out, per_doc, counts = [], {}, Counter()
    for d in docs:
        text, found = mask_pii(d["text"])
        if found:
            per_doc[d["id"]] = found
            counts.update(kind for kind, _ in found)
        out.append({**d, "text": text})
    return out, stage_stats(docs, out, t0, pii_counts=dict(counts), found=per_doc)
