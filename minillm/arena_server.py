"""A local web arena, as Chatbot Arena runs it (lesson 12).

A person asks a question (or takes a TinyWorld prompt), sees two anonymous models'
answers streamed side by side, votes A / B / tie / both bad, and only then learns which
models they were. Votes are appended to the battles file (`minillm.arena`) that the
ratings read; the leaderboard page refits the ratings on every visit.

`Arena` holds the state and is tested without HTTP; `serve` puts it behind the standard
library's threaded HTTP server, on the loopback interface only. The routes:

    GET  /                     the page          POST /api/battle {prompt?} -> {id, prompt}
    GET  /api/stream/ID/a|b    one answer, streamed as plain text
    POST /api/vote {id, verdict} -> {model_a, model_b}     GET /leaderboard, /api/leaderboard

A malformed request gets a 4xx JSON error and changes nothing; a battle takes one vote
(a second, from another tab, gets 409), so no vote is lost or counted twice.

Left out: accounts, rate limits, moderation — it is a classroom tool, not a public site.
"""

from __future__ import annotations

import html
import json
import random
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

from minillm import arena, ratings
from minillm.utils import MiniLLMError

# answerer(prompt) -> the answer's text, piece by piece
Answerer = Callable[[str], Iterator[str]]


class Arena:
    """Battles in progress and the battles file."""

    def __init__(self, models: dict[str, Answerer], battles_path: str | Path,
                 prompts: list[str] | None = None, seed: int = 0):
        if len(models) < 2:
            raise MiniLLMError(f"an arena needs at least two models, got {sorted(models)}")
        self.models, self.path, self.prompts = models, Path(battles_path), prompts or []
        arena.read_battles(self.path)          # a damaged file is an error now, not at the first vote
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.pending: dict[str, dict] = {}

    def new_battle(self, prompt: str | None = None) -> dict:
        prompt = (prompt or "").strip() or (self.rng.choice(self.prompts) if self.prompts else "")
        if not prompt:
            raise MiniLLMError("ask a question (this arena has no example prompts)")
        if len(prompt) > 4000:
            raise MiniLLMError("the question is too long (4000 characters at most)")
        with self.lock:
            a, b = self.rng.sample(sorted(self.models), 2)
            battle_id = uuid.uuid4().hex
            self.pending[battle_id] = dict(prompt=prompt, model_a=a, model_b=b, answer_a=None, answer_b=None)
        return dict(id=battle_id, prompt=prompt)

    def _battle(self, battle_id: str) -> dict:
        battle = self.pending.get(battle_id)
        if battle is None:
            raise KeyError(battle_id)
        return battle

    def stream(self, battle_id: str, side: str) -> Iterator[str]:
        """The answer of side 'a' or 'b', piece by piece; the whole answer is kept for the record."""
        if side not in ("a", "b"):
            raise MiniLLMError(f"side must be a or b, got {side!r}")
        battle = self._battle(battle_id)
        pieces = []
        for piece in self.models[battle[f"model_{side}"]](battle["prompt"]):
            pieces.append(piece)
            yield piece
        battle[f"answer_{side}"] = "".join(pieces)

    def vote(self, battle_id: str, verdict: str) -> dict:
        """Record the verdict (once) and reveal the two models."""
        if verdict not in arena.VERDICTS:
            raise MiniLLMError(f"verdict must be one of {arena.VERDICTS}, got {verdict!r}")
        with self.lock:
            battle = self.pending.pop(battle_id, None)
            if battle is None:
                raise KeyError(battle_id)
            arena.append_battle(self.path, dict(battle, verdict=verdict, judge="human"))
        return dict(model_a=battle["model_a"], model_b=battle["model_b"])

    def leaderboard(self) -> list[dict]:
        records = arena.read_battles(self.path)
        if len({m for r in records for m in (r["model_a"], r["model_b"])}) < 2:
            return []
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # an undefeated model is fine on a live board
            fit = ratings.fit_bradley_terry(arena.outcomes(records))
        counts = {n: sum(n in (r["model_a"], r["model_b"]) for r in records) for n in fit.names}
        order = sorted(fit.names, key=lambda n: -fit.as_dict()[n])
        return [dict(model=n, rating=round(fit.as_dict()[n], 1), battles=counts[n]) for n in order]


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>minillm arena</title>
<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}.row{display:flex;gap:1em}
.pane{flex:1;border:1px solid #999;padding:1em;min-height:6em;white-space:pre-wrap}
button{margin:.3em}#error{color:#b00}</style></head><body>
<h1>minillm arena</h1><p>Ask a question, read two anonymous answers, vote. <a href="/leaderboard">Leaderboard</a></p>
<textarea id="prompt" rows="3" cols="80" placeholder="Ask anything (empty: a TinyWorld question)"></textarea><br>
<button id="ask">Ask</button><div id="error"></div><p id="question"></p>
<div class="row"><div class="pane" id="a"></div><div class="pane" id="b"></div></div>
<div id="votes" hidden><button id="vote-a">A is better</button><button id="vote-b">B is better</button>
<button id="vote-tie">Tie</button><button id="vote-both_bad">Both are bad</button></div><p id="reveal"></p>
<script>
let battle=null;
async function post(url,body){const r=await fetch(url,{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(body)});
 const j=await r.json(); if(!r.ok) throw new Error(j.error); return j;}
async function stream(side){const el=document.getElementById(side); el.textContent='';
 const r=await fetch('/api/stream/'+battle.id+'/'+side); const rd=r.body.getReader(); const dec=new TextDecoder();
 for(;;){const {done,value}=await rd.read(); if(done) break; el.textContent+=dec.decode(value,{stream:true});}}
document.getElementById('ask').onclick=async()=>{document.getElementById('error').textContent='';
 document.getElementById('reveal').textContent='';
 try{battle=await post('/api/battle',{prompt:document.getElementById('prompt').value});
  document.getElementById('question').textContent=battle.prompt;
  await Promise.all([stream('a'),stream('b')]); document.getElementById('votes').hidden=false;}
 catch(e){document.getElementById('error').textContent=e.message;}};
for(const v of ['a','b','tie','both_bad']){document.getElementById('vote-'+v).onclick=async()=>{
 try{const r=await post('/api/vote',{id:battle.id,verdict:v}); document.getElementById('votes').hidden=true;
  document.getElementById('reveal').textContent='A was '+r.model_a+', B was '+r.model_b;}
 catch(e){document.getElementById('error').textContent=e.message;}};}
</script></body></html>"""


def leaderboard_html(rows: list[dict]) -> str:
    body = "".join(f"<tr><td>{i}</td><td>{html.escape(r['model'])}</td><td>{r['rating']}</td><td>{r['battles']}</td></tr>"
                   for i, r in enumerate(rows, 1)) or "<tr><td colspan=4>no votes yet</td></tr>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>leaderboard</title></head><body>"
            f"<h1>Leaderboard</h1><table id='board' border=1><tr><th>rank</th><th>model</th><th>rating</th>"
            f"<th>battles</th></tr>{body}</table><p><a href='/'>back to the arena</a></p></body></html>")


def make_handler(state: Arena) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:    # quiet: the terminal shows the server's own lines
            pass

        def _send(self, code: int, body: str, kind: str = "application/json") -> None:
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str) -> None:
            self._send(code, json.dumps(dict(error=message)))

        def _json_body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            if n > 100_000:
                raise MiniLLMError("request too large")
            body = json.loads(self.rfile.read(n) or b"{}")
            if not isinstance(body, dict):
                raise MiniLLMError("the request body must be a JSON object")
            return body

        def do_GET(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts == [""]:
                return self._send(200, PAGE, "text/html")
            if parts == ["leaderboard"]:
                return self._send(200, leaderboard_html(state.leaderboard()), "text/html")
            if parts == ["api", "leaderboard"]:
                return self._send(200, json.dumps(state.leaderboard()))
            if len(parts) == 4 and parts[:2] == ["api", "stream"]:
                try:
                    pieces = state.stream(parts[2], parts[3])
                    first = next(pieces, "")
                except KeyError:
                    return self._error(404, "no such battle")
                except MiniLLMError as e:
                    return self._error(400, str(e))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in [first, *pieces]:
                    data = piece.encode("utf-8")
                    if data:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                return None
            return self._error(404, f"no page {self.path}")

        def do_POST(self) -> None:
            try:
                body = self._json_body()
                if self.path == "/api/battle":
                    return self._send(200, json.dumps(state.new_battle(body.get("prompt"))))
                if self.path == "/api/vote":
                    return self._send(200, json.dumps(state.vote(str(body.get("id")), str(body.get("verdict")))))
                return self._error(404, f"no route {self.path}")
            except KeyError:
                return self._error(409, "this battle is over (already voted) or unknown")
            except (MiniLLMError, json.JSONDecodeError, ValueError) as e:
                return self._error(400, str(e))

    return Handler


def serve(state: Arena, port: int = 8000) -> ThreadingHTTPServer:
    """A server for `state` on 127.0.0.1:port (port 0: any free port); call serve_forever()."""
    return ThreadingHTTPServer(("127.0.0.1", port), make_handler(state))
