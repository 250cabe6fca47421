"""The grader's pytest plugin: one authenticated record per event, and a tamper watch.

The grader copies this file outside the workspace (as `minillm_grade_plugin`, so the
submission cannot shadow it) and loads it first (`-p minillm_grade_plugin`), before
any conftest or test module, hence before any submitted code. At import it takes
from the environment the numbers of two pipe ends the grader opened
(`MINILLM_GRADE_FDS=events,key`), reads a one-time key from the second and closes
it; every record it writes to the first is `<HMAC-SHA256 of seq+json> <json>`. A
record the grader cannot verify flags the run, so writing to the pipe (or to any
file) without the key forges nothing.

It also watches, after collection and at every report, that no pytest plugin or
hook implementation came from outside pytest, pluggy, the loaded plugins and the
instructor's tests, and that no function of pytest's run/report machinery was
replaced; it reports what it finds as a `tamper` record. Code running in this same
process can in principle defeat both (lessons/README.md, "Threat model").

This module imports nothing from minillm (it runs beside the submission's copy).
"""

import hashlib
import hmac
import inspect
import json
import os
import sys
import time

import pytest

_WATCHED = ("_pytest.runner", "_pytest.python", "_pytest.reports", "_pytest.main", "_pytest.skipping",
            "_pytest.outcomes", "_pytest.nodes", "_pytest.fixtures", "_pytest.capture", "pluggy._callers",
            "pluggy._hooks", "pluggy._manager")


def _channel():
    """(write, key): the event pipe and a closure that signs and writes one record."""
    if "MINILLM_GRADE_FDS" not in os.environ:  # imported outside the grader (doctest collection)
        def refuse(rec):
            raise RuntimeError("minillm's grading plugin runs only inside `minillm assign grade`")
        return refuse
    fd_events, fd_key = (int(x) for x in os.environ.pop("MINILLM_GRADE_FDS").split(","))
    with os.fdopen(fd_key, "rb") as f:
        key = f.read()
    os.set_inheritable(fd_events, False)  # programs the tests start do not get it
    seq = [0]

    def write(rec):
        rec["seq"], rec["t"] = seq[0], time.time()
        seq[0] += 1
        body = json.dumps(rec).encode()
        line = hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b" " + body + b"\n"
        view = memoryview(line)
        while view:
            view = view[os.write(fd_events, view):]

    return write


_emit = _channel()
_KEEP = None
if os.environ.get("MINILLM_GRADE_SELECT"):
    with open(os.environ["MINILLM_GRADE_SELECT"], encoding="utf-8") as _f:
        _KEEP = set(_f.read().splitlines())
_CLIP = int(os.environ.get("MINILLM_GRADE_CLIP", "4000"))
_STATE = {"allowed": (), "code": {}, "told": set()}
_CONFIG = []


def _clip(text):
    if len(text) <= _CLIP:
        return text
    h = _CLIP // 2
    return text[:h] + "\n... [%d characters cut] ...\n" % (len(text) - 2 * h) + text[-h:]


# ---- the tamper watch ----------------------------------------------------------

def _code_ids():
    """id of the code of every function (and method) of pytest's run/report machinery."""
    out = {}
    for modname in _WATCHED:
        mod = sys.modules.get(modname)
        for name, obj in vars(mod).items() if mod else ():
            if isinstance(obj, type) and obj.__module__ == modname:
                for attr, member in vars(obj).items():
                    code = getattr(getattr(member, "__func__", member), "__code__", None)
                    if code is not None:
                        out[f"{modname}.{name}.{attr}"] = id(code)
            else:
                code = getattr(obj, "__code__", None)
                if code is not None:
                    out[f"{modname}.{name}"] = id(code)
    return out


def _file_of(obj):
    try:
        return os.path.realpath(inspect.getfile(obj if inspect.ismodule(obj) or inspect.isfunction(obj)
                                                or inspect.isclass(obj) else type(obj)))
    except (TypeError, OSError):
        return None


def _foreign(config):
    """Descriptions of hook implementations whose code lives outside the allowed places."""
    found = []
    for hookname in dir(config.hook):
        caller = getattr(config.hook, hookname)
        for impl in getattr(caller, "get_hookimpls", lambda: [])():
            func = impl.function
            code = getattr(func, "__code__", None)
            where = os.path.realpath(code.co_filename) if code else _file_of(func)
            if not where or not where.startswith(_STATE["allowed"]):
                found.append(f"{hookname} from {impl.plugin_name} ({where})")
    return found


def _watch(config, when):
    problems = [f"pytest's {name} was replaced" for name, ident in _code_ids().items()
                if _STATE["code"].get(name, ident) != ident]
    problems += [f"a hook implementation not from pytest or the instructor's tests: {f}" for f in _foreign(config)]
    new = [p for p in problems if p not in _STATE["told"]]
    if new:
        _STATE["told"].update(new)
        _emit({"event": "tamper", "when": when, "what": new[:20]})


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    dirs = [os.path.dirname(os.path.realpath(m.__file__)) for m in
            (pytest, sys.modules["_pytest"], sys.modules["pluggy"], sys.modules[__name__])]
    for name in ("pytest_timeout", "_hypothesis_pytestplugin", "hypothesis"):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "__file__", None):
            path = os.path.realpath(mod.__file__)
            dirs.append(os.path.dirname(path) if name == "hypothesis" else path)
    root = os.path.realpath(str(config.rootpath))
    dirs += [os.path.join(root, "tests") + os.sep, os.path.join(root, "conftest.py")]
    _STATE["allowed"] = tuple(d if d.endswith((os.sep, ".py")) else d + os.sep for d in dirs)
    _STATE["code"] = _code_ids()
    _CONFIG.append(config)


# ---- the records ------------------------------------------------------------------

def pytest_collectreport(report):
    if report.failed:
        _emit({"event": "collect_error", "nodeid": report.nodeid, "text": _clip(str(report.longrepr))})


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    if _KEEP is not None:
        drop = [i for i in items if i.nodeid not in _KEEP]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i.nodeid in _KEEP]
    tests = []
    for item in items:
        exercises, visibility = [], None
        for m in item.iter_markers("exercise"):
            exercises += [str(a) for a in m.args]
            visibility = visibility or m.kwargs.get("visibility")
        tests.append({"nodeid": item.nodeid, "exercises": exercises, "visibility": visibility,
                      "slow": item.get_closest_marker("slow") is not None})
    _watch(config, "collection")
    _emit({"event": "collected", "tests": tests})


def pytest_runtest_logstart(nodeid, location):
    _emit({"event": "start", "nodeid": nodeid})


def _report_text(report):
    if report.failed:
        return str(report.longrepr)
    if report.skipped:
        lr = report.longrepr
        reason = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
        if hasattr(report, "wasxfail"):
            return "xfail: " + str(report.wasxfail)
        return "skipped: " + (reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason)
    return ""


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    _watch(_CONFIG[0], report.nodeid)
    captured = "".join("--- %s ---\n%s\n" % (n, c) for n, c in report.sections)
    _emit({"event": "report", "nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
           "text": _clip(_report_text(report)), "captured": _clip(captured), "captured_chars": len(captured),
           "duration": report.duration})


def pytest_sessionfinish(session, exitstatus):
    _watch(session.config, "finish")
    _emit({"event": "finish", "exitstatus": int(exitstatus)})
