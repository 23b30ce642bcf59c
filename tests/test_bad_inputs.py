"""The bad-input corpus (bad_inputs.py) under both CPU kernel sets: every case ends in the
expected Python exception with a message naming the problem, or in its documented result.

Cases run in subprocesses (bad_input_worker.py), a batch per process, so a segfault, an abort
(a sanitizer report, std::terminate) or a hang in native code fails the case that caused it
instead of the test run: the worker announces each case before running it, and after a crash
or a timeout the rest of the batch runs again in a fresh process.
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

import bad_inputs

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "bad_input_worker.py")
BATCH = 40
# Seconds a batch may take; generous, since sanitizer builds run several times slower.
TIMEOUT = float(os.environ.get("ENGINE_CORPUS_TIMEOUT", "120"))


def _as_json(case):
    if isinstance(case, bad_inputs.Raises):
        errors = case.error if isinstance(case.error, tuple) else (case.error,)
        return {"id": case.id, "code": case.code, "kind": "raises",
                "error": [e.__name__ for e in errors], "match": case.match}
    return {"id": case.id, "code": case.code, "kind": "returns", "error": [], "match": ""}


def _parse(stdout):
    started, ended = [], {}
    for line in stdout.splitlines():
        if line.startswith("START "):
            started.append(line.split(" ", 1)[1])
        elif line.startswith("END "):
            _, cid, payload = line.split(" ", 2)
            ended[cid] = json.loads(payload)
    return started, ended


def run_cases(cases, backend, batch=BATCH, timeout=TIMEOUT):
    """{case id: {"ok": bool, "detail": str}} for `cases` run under `backend`."""
    env = dict(os.environ, ENGINE_BACKEND=backend)
    results, pending = {}, [_as_json(c) for c in cases]
    with tempfile.TemporaryDirectory() as tmp:
        while pending:
            chunk = pending[:batch]
            path = os.path.join(tmp, "cases.json")
            with open(path, "w") as f:
                json.dump({"prelude": bad_inputs.PRELUDE, "cases": chunk}, f)
            # the worker imports the installed engine, not the source tree beside the tests
            proc = subprocess.Popen([sys.executable, WORKER, path], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
            try:
                out, err = proc.communicate(timeout=timeout)
                why = None if proc.returncode == 0 else f"the process died (exit status {proc.returncode})"
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                why = f"hang: no result within {timeout:.0f} s"
            started, ended = _parse(out)
            results.update(ended)
            unfinished = [cid for cid in started if cid not in ended]
            if why is None and not unfinished and len(ended) == len(chunk):
                pending = pending[batch:]
                continue
            if not unfinished:  # died before or between cases: blame the next one
                unfinished = [c["id"] for c in chunk if c["id"] not in ended][:1]
            culprit = unfinished[0]
            tail = "\n".join(err.strip().splitlines()[-25:])
            results[culprit] = {"ok": False, "detail": f"{why or 'no result'} while running it\n{tail}"}
            done = set(results)
            pending = [c for c in pending if c["id"] not in done]
    return results


_results = {}


def corpus_results(backend):
    if backend not in _results:
        _results[backend] = run_cases(bad_inputs.CASES, backend)
    return _results[backend]


@pytest.mark.parametrize("backend_name", ["numpy", "native"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in bad_inputs.CASES])
def test_bad_input_is_refused_clearly(case, backend_name):
    result = corpus_results(backend_name)[case.id]
    what = case.doc if isinstance(case, bad_inputs.Returns) else f"{case.error} matching {case.match!r}"
    assert result["ok"], f"{case.id}: {case.code}\n  expected: {what}\n  got: {result['detail']}"


def test_the_corpus_is_large_and_every_case_names_its_problem():
    ids = [c.id for c in bad_inputs.CASES]
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids), "case ids must be unique"
    for c in bad_inputs.CASES:
        if isinstance(c, bad_inputs.Raises):
            assert len(c.match) >= 8, f"{c.id}: the expected message must name the problem"
        else:
            assert c.doc and "assert" in c.code, f"{c.id}: a documented result needs a doc and asserts"


def test_a_crash_or_a_hang_is_blamed_on_its_case_and_the_rest_still_runs():
    fine = bad_inputs.Raises("fine", "engine.zeros(-1)", ValueError, r"negative dimension")
    cases = [
        fine,
        bad_inputs.Returns("segfault", "import ctypes; ctypes.string_at(0); assert True", "crashes"),
        bad_inputs.Raises("after-segfault", "engine.cat([])", ValueError, r"non-empty sequence"),
        bad_inputs.Returns("hang", "import time; time.sleep(60); assert True", "hangs"),
        bad_inputs.Raises("after-hang", "engine.stack([])", ValueError, r"non-empty sequence"),
    ]
    results = run_cases(cases, "native", batch=5, timeout=10)
    assert results["fine"]["ok"] and results["after-segfault"]["ok"] and results["after-hang"]["ok"]
    assert not results["segfault"]["ok"] and "died" in results["segfault"]["detail"]
    assert not results["hang"]["ok"] and "hang" in results["hang"]["detail"]
