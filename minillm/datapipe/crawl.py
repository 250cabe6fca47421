"""A synthetic web crawl whose truth is known: HTML pages around TinyWorld stories.

Builds `make_crawl(n_pages, seed) -> (pages, truth)`. A page is what a crawler
hands the pipeline: {"id", "url", "html"}. Its truth, kept in a separate list, says
what the page really is:

    kind      good | exact_dup | near_dup | spam | repeated | short | gibberish | de | pt
    cluster   pages with the same cluster are copies of one another (dedup's truth)
    content   the main-content lines the page was built from (extraction's truth)
    pii       [(type, value)] inserted into the page; decoys look like PII but are not
    domain    stories | qa (what the mixing stage should find)

Good pages wrap 1-6 stories (some 20-40: very long pages) in a site template:
navigation, a cookie banner, an ad, a script and a style, a footer, and one
"unmarked" boilerplate paragraph (no class name gives it away: only line
deduplication across the corpus can find it). Some pages are malformed (unclosed
tags). Everything is drawn from one `random.Random` per page, so the crawl is
byte-identical for a seed and any page can be made alone.

Left out: real URLs and link structure, robots.txt, character encodings other
than UTF-8, images, JavaScript-rendered content.
"""

from __future__ import annotations

import dataclasses
import html
import random

from minillm import world
from minillm.utils import MiniLLMError

KINDS = {  # kind -> share of the crawl (the rest of the pages are good)
    "exact_dup": 0.08, "near_dup": 0.08, "spam": 0.06, "repeated": 0.05,
    "short": 0.05, "gibberish": 0.05, "de": 0.04, "pt": 0.04,
}
GOOD_KINDS = ("good",)  # what a perfect pipeline keeps (plus one page of each duplicate cluster)

SITES = [  # (host, nav class, footer text, unmarked boilerplate paragraph)
    ("storytime.example", "menu", "© 2024 Storytime. All rights reserved.",
     "Share this story with your friends and family!"),
    ("kidsreads.example", "nav", "Kids Reads is a registered trademark. Terms of use | Privacy policy",
     "Did you like this story? Leave a comment below."),
    ("fablehub.example", "topbar", "FableHub 2024 - made with love in the village.",
     "Subscribe to our newsletter for a new story every week."),
    ("taleshelf.example", "navigation", "Copyright TaleShelf. Contact the webmaster.",
     "Read more stories like this one in our archive."),
]
COOKIE = "We use cookies to improve your experience. By using this site you accept our cookie policy."
ADS = ["Buy cheap shoes now! Limited offer.", "Win a free phone today, click here.",
       "Best pizza in town - order online."]
SPAM_WORDS = ["cheap", "best", "buy", "online", "free", "casino", "shoes", "discount", "deal",
              "price", "offer", "bonus", "win", "cash", "loans", "pills", "click", "now"]
REPEATED_LINES = ["Click here to win a prize!", "Page loading, please wait.", "Sign up now for free!"]
SHORT_TEXTS = ["Page not found.", "Coming soon!", "Login required. Go back home.", "Error 404."]

# Two small languages for language identification: a story template each.
DE = dict(names=world.NAMES, animals=["Katze", "Hund", "Fuchs", "Eule", "Bär", "Hase", "Maus", "Frosch"],
          places=["im Wald", "im Dorf", "am See", "auf dem Berg", "am Fluss", "im Garten"],
          things=["Äpfel", "Bälle", "Muscheln", "Steine", "Kekse", "Blumen"],
          lines=["Es war einmal ein kleiner {animal} namens {a}.",
                 "{a} wohnte {place} und hatte {n} schöne {thing}.",
                 "Eines Tages traf {a} die Freundin {b}, die sehr müde war.",
                 "Dann schenkte {a} der Freundin {b} zwei {thing}, und beide freuten sich.",
                 "Am Abend sangen {a} und {b} ein fröhliches Lied. Das Ende."])
PT = dict(names=world.NAMES, animals=["gato", "cão", "raposa", "coruja", "urso", "coelho", "rato", "sapo"],
          places=["na floresta", "na aldeia", "perto do lago", "na montanha", "junto ao rio", "no jardim"],
          things=["maçãs", "bolas", "conchas", "pedras", "biscoitos", "flores"],
          lines=["Era uma vez um {animal} pequeno chamado {a}.",
                 "{a} morava {place} e tinha {n} lindas {thing}.",
                 "Um dia, {a} encontrou a amiga {b}, que estava cansada.",
                 "Então {a} deu à amiga {b} duas {thing}, e as duas ficaram felizes.",
                 "À noite, {a} e {b} cantaram uma canção. Fim."])
LANGS = {"de": DE, "pt": PT}


@dataclasses.dataclass
class CrawlConfig:
    """How big a crawl to make, and how to shard it."""

    pages: int = dataclasses.field(default=3000, metadata={"help": "number of pages in the crawl"})
    seed: int = dataclasses.field(default=0, metadata={"help": "the crawl's seed: same seed, same bytes"})
    shards: int = dataclasses.field(default=8, metadata={"help": "number of JSONL.gz shards to write"})


def foreign_story(rng: random.Random, lang: str) -> str:
    """One German or Portuguese story (one line), drawn from its template."""
    t = LANGS[lang]
    a, b = rng.sample(t["names"], 2)
    fill = dict(a=a, b=b, animal=rng.choice(t["animals"]), place=rng.choice(t["places"]),
                thing=rng.choice(t["things"]), n=rng.randrange(2, 10))
    return " ".join(line.format(**fill) for line in t["lines"])


def pii_line(rng: random.Random) -> tuple[str, list[tuple[str, str]], str]:
    """An author line with an e-mail, a phone number and/or an IPv4 address, and a decoy.

    Returns (line, [(type, value)], decoy). Decoys (a version number with an octet
    over 255, a date) look like PII to a careless pattern.
    """
    name = rng.choice(world.NAMES).lower()
    pii, parts = [], [f"Written by {name.title()}."]
    if rng.random() < 0.8:
        email = f"{name}.{rng.choice(['smith', 'lee', 'costa', 'meyer'])}{rng.randrange(100)}@" \
                f"{rng.choice(['mail', 'post', 'inbox'])}.example.com"
        pii.append(("EMAIL_ADDRESS", email))
        parts.append(f"Write to {email} for questions.")
    if rng.random() < 0.6:
        phone = f"+1 {rng.randrange(200, 999)}-{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}"
        pii.append(("PHONE_NUMBER", phone))
        parts.append(f"Call {phone} after noon.")
    if rng.random() < 0.4:
        ip = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        pii.append(("IP_ADDRESS", ip))
        parts.append(f"Posted from {ip}.")
    decoy = rng.choice([f"Version 2.{rng.randrange(10)}.{rng.randrange(256, 999)}.1 of the site.",
                        f"Updated on 2024-0{rng.randrange(1, 10)}-1{rng.randrange(10)}."])
    parts.append(decoy)
    return " ".join(parts), pii, decoy


def render_page(rng: random.Random, site: tuple, title: str, lines: list[str]) -> str:
    """Wrap main-content `lines` in the site's template: the HTML a crawler would fetch."""
    host, nav_class, footer, unmarked = site
    esc = html.escape
    nav = "".join(f'<li><a href="/{w.lower()}">{w}</a></li>' for w in ["Home", "Stories", "About", "Contact"])
    body = "\n".join(f"<p>{esc(line)}</p>" for line in lines)
    parts = [
        "<!DOCTYPE html>", f"<html><head><title>{esc(title)}</title>",
        "<style>body { font-family: sans-serif; } .ad { color: red; }</style>",
        "<script>var tracker = {id: 42}; function track() { return tracker; }</script>", "</head><body>",
        f'<div class="{nav_class}"><ul>{nav}</ul></div>' if rng.random() < 0.5 else f"<nav><ul>{nav}</ul></nav>",
        f'<div class="cookie-banner">{esc(COOKIE)}</div>' if rng.random() < 0.7 else "",
        f"<main><article><h1>{esc(title)}</h1>", body, "</article></main>",
        f'<div class="ad">{esc(rng.choice(ADS))}</div>' if rng.random() < 0.6 else "",
        f"<p>{esc(unmarked)}</p>",
        f"<footer>{esc(footer)}</footer>", "</body></html>",
    ]
    page = "\n".join(p for p in parts if p)
    if rng.random() < 0.05:  # malformed: a cut-off page with unclosed tags
        page = page.replace("</article></main>", "<div><p>").rsplit("</body>", 1)[0]
    return page


def _good_lines(rng: random.Random, seed: int, index: int) -> tuple[list[str], list, str]:
    """The content lines of a good page, its PII, and its domain."""
    n_stories = rng.randrange(20, 41) if rng.random() < 0.03 else rng.randrange(1, 7)
    stories = [world.sample_story(world.story_rng(seed, f"crawl{index}", j)) for j in range(n_stories)]
    lines = [s.text for s in stories]
    domain = "stories"
    if rng.random() < 0.15:  # a QA page: the questions and answers of its first story
        domain = "qa"
        lines += qa_lines(stories[0].facts)
    pii = []
    if rng.random() < 0.15:
        line, pii, _ = pii_line(rng)
        lines.insert(rng.randrange(len(lines) + 1), line)
    return lines, pii, domain


def qa_lines(f: dict) -> list[str]:
    """Three question-answer lines about a story, from its facts (hero, place, counts)."""
    return [f"Q: Where did {f['hero']} live? A: Near {f['place']}.",
            f"Q: How many {f['colour']} {f['object']} did {f['hero']} have at the start? "
            f"A: {world.NUMBERS[f['start']].capitalize()}.",
            f"Q: How many did {f['friend']} have at the end? A: {world.NUMBERS[f['friend_end']].capitalize()}."]


def _perturb(rng: random.Random, lines: list[str]) -> list[str]:
    """A near-duplicate: a few words replaced (3 per page), the rest kept."""
    words = [line.split(" ") for line in lines]
    for _ in range(3):
        i = rng.randrange(len(words))
        j = rng.randrange(len(words[i]))
        words[i][j] = rng.choice(world.ADVERBS + world.TRAITS)
    return [" ".join(w) for w in words]


def _bad_page(rng: random.Random, kind: str) -> list[str]:
    """Content lines of a page that a pipeline should drop."""
    if kind == "spam":
        return [" ".join(rng.choice(SPAM_WORDS) for _ in range(rng.randrange(20, 40)))
                for _ in range(rng.randrange(3, 8))]
    if kind == "repeated":
        return [rng.choice(REPEATED_LINES)] * rng.randrange(10, 30)
    if kind == "short":
        return [rng.choice(SHORT_TEXTS)]
    if kind == "gibberish":
        letters = "bcdfghjklmnpqrstvwxzaeiou0123456789#@%"
        return [" ".join("".join(rng.choice(letters) for _ in range(rng.randrange(2, 14)))
                         for _ in range(rng.randrange(30, 80))) + "." for _ in range(rng.randrange(2, 5))]
    return [foreign_story(rng, kind) for _ in range(rng.randrange(1, 5))]  # de / pt


def make_crawl(n_pages: int = 3000, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """The crawl (what the pipeline sees) and its truth (what only the metrics see).

    Example: `pages, truth = make_crawl(100, seed=1)`; `pages[i]["id"] == truth[i]["id"]`.
    """
    world.check_size_and_seed(n_pages, seed)
    rng = random.Random(f"crawl/{seed}")
    kinds = [k for k, share in KINDS.items() for _ in range(round(share * n_pages))]
    kinds = (kinds + ["good"] * n_pages)[:n_pages]
    rng.shuffle(kinds)
    # Copies need an original made before them: the first pages are made good.
    pages, truth, good = [], [], []
    for i, kind in enumerate(kinds):
        prng = random.Random(f"crawl/{seed}/page/{i}")
        if kind in ("exact_dup", "near_dup") and not good:
            kind = "good"
        site = SITES[prng.randrange(len(SITES))]
        url = f"https://{site[0]}/page/{i}"
        t = dict(id=f"p{i:06d}", kind=kind, cluster=f"p{i:06d}", pii=[], domain="stories", lang="en")
        if kind == "exact_dup":
            orig = good[prng.randrange(len(good))]
            page_html, lines = pages[orig]["html"], truth[orig]["content"]
            t.update(cluster=truth[orig]["cluster"], pii=truth[orig]["pii"], domain=truth[orig]["domain"])
        elif kind == "near_dup":
            orig = good[prng.randrange(len(good))]
            lines = _perturb(prng, truth[orig]["content"])
            page_html = render_page(prng, site, "A story", lines)
            t.update(cluster=truth[orig]["cluster"], domain=truth[orig]["domain"],
                     pii=[p for p in truth[orig]["pii"] if any(p[1] in line for line in lines)])
        elif kind == "good":
            lines, t["pii"], t["domain"] = _good_lines(prng, seed, i)
            page_html = render_page(prng, site, "A story", lines)
            good.append(i)
        else:
            lines = _bad_page(prng, kind)
            t["lang"] = kind if kind in LANGS else "en"
            page_html = render_page(prng, site, "Welcome", lines)
        t["content"] = lines
        pages.append(dict(id=t["id"], url=url, html=page_html))
        truth.append(t)
    return pages, truth


def check_pages(pages: list[dict]) -> None:
    """One clear error if `pages` is not a list of {"id", "html"} dicts."""
    if not isinstance(pages, list):
        raise MiniLLMError(f"pages must be a list of dicts, got {type(pages).__name__}")
    for p in pages:
        if not isinstance(p, dict) or "id" not in p or "html" not in p:
            raise MiniLLMError("every page needs an 'id' and an 'html' field")
