"""Text extraction: HTML -> the page's main text, with the standard library's parser.

Builds `html_to_text(html)` and the stage `extract(pages)`. The rules are the
simple ones every extractor starts from:

- drop everything inside <script>, <style>, <noscript>, <nav>, <header>, <footer>,
  <aside>, <form>, <head> (the <title> is dropped too: it is not body text);
- drop elements whose class or id names boilerplate (nav, menu, cookie, banner, ad,
  footer, sidebar ...);
- block elements (<p>, <div>, <li>, <h1>..<h6>, <br>, <tr>) end a line; runs of
  whitespace inside a line collapse to one space; empty lines go.

`html.parser` is forgiving: unclosed tags, stray end tags and bad entities do not
raise, which is what a crawl needs. Left out: readability-style scoring of text
density (trafilatura, resiliparse do that: the interop tests compare with them),
tables, character-encoding detection (pages are UTF-8 here; bytes that are not
are replaced, never a crash).
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

DROP_TAGS = {"script", "style", "noscript", "nav", "header", "footer", "aside", "form", "head",
             "svg", "iframe", "template"}
BLOCK_TAGS = {"p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "br", "tr",
              "article", "main", "section", "blockquote", "pre", "table", "body"}
VOID_TAGS = {"br", "img", "hr", "meta", "link", "input", "area", "base", "col", "source", "wbr"}
BOILERPLATE_CLASS = re.compile(r"(^|[-_ ])(nav|navigation|menu|topbar|cookie|banner|ad|ads|advert|"
                               r"footer|sidebar|share|social|popup)([-_ ]|$)", re.IGNORECASE)


class _TextParser(HTMLParser):
    """Collects text outside dropped elements; `self.lines` is the result."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # open elements: (tag, dropped?)
        self.lines: list[str] = []
        self.buf: list[str] = []

    def _dropping(self) -> bool:
        return any(drop for _, drop in self.stack)

    def _break(self) -> None:
        line = " ".join("".join(self.buf).split())
        if line:
            self.lines.append(line)
        self.buf = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in BLOCK_TAGS:
            self._break()
        if tag in VOID_TAGS:
            return
        names = " ".join(v or "" for k, v in attrs if k in ("class", "id"))
        self.stack.append((tag, tag in DROP_TAGS or bool(BOILERPLATE_CLASS.search(names))))

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCK_TAGS:
            self._break()
        # Close up to the matching open tag; an end tag with no open match is ignored.
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k][0] == tag:
                del self.stack[k:]
                break

    def handle_data(self, data: str) -> None:
        if not self._dropping():
            self.buf.append(data)


def html_to_text(page_html: str) -> str:
    """The main text of a page, one block per line.

    Example: `html_to_text("<p>Hi <b>there</b></p><nav>Home</nav><p>Bye</p>")` -> "Hi there\\nBye".
    """
    if isinstance(page_html, bytes):  # a crawl may hand us bytes: decode, replacing what is not UTF-8
        page_html = page_html.decode("utf-8", errors="replace")
    parser = _TextParser()
    parser.feed(page_html)
    parser.close()
    parser._break()
    return "\n".join(parser.lines)


def looks_binary(text: str) -> bool:
    """True for content that is not text: NUL bytes or > 10% control/replacement characters."""
    if not text:
        return False
    if "\x00" in text:
        return True
    bad = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\n\t\r") or ch == "\ufffd")
    return bad > 0.1 * len(text)


def extract(pages: list[dict]) -> tuple[list[dict], dict]:
    """Stage: {"id", "url", "html"} -> {"id", "url", "text"}; binary or empty pages are dropped.

    Stats: docs_in, docs_out, bytes_in (HTML), bytes_out (text), dropped ids, seconds.
    """
    t0 = time.perf_counter()
    out, dropped, bytes_in = [], [], 0
    for p in pages:
        raw = p.get("html", "")
        bytes_in += len(raw.encode("utf-8", errors="replace")) if isinstance(raw, str) else len(raw)
        if isinstance(raw, str) and looks_binary(raw):
            dropped.append(p["id"])
            continue
        text = html_to_text(raw)
        if not text or looks_binary(text):
            dropped.append(p["id"])
            continue
        out.append({"id": p["id"], "url": p.get("url", ""), "text": text})
    return out, dict(docs_in=len(pages), docs_out=len(out), bytes_in=bytes_in,
                     bytes_out=sum(len(d["text"].encode("utf-8")) for d in out),
                     dropped=dropped, seconds=time.perf_counter() - t0)
