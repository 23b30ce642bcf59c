"""Runs bad-input cases in this process, one after another, and reports each on stdout:

    START <id>            before the case runs
    END <id> <json>       after it: {"ok": bool, "detail": str}

so the parent (test_bad_inputs.py) can tell which case was running when the process died or
hung. Usage: python bad_input_worker.py CASES.json (a list of {"id", "code", "kind", "error",
"match"}; error is a list of builtin exception names)."""
import builtins
import json
import re
import sys
import warnings


def outcome(case, prelude):
    namespace = dict(prelude)
    try:
        exec(compile(case["code"], f"<case {case['id']}>", "exec"), namespace)
    except Exception as e:  # the corpus is about which exception, so every one is caught
        got = f"{type(e).__name__}: {e}"
        if case["kind"] == "returns":
            return False, f"raised {got}"
        expected = tuple(getattr(builtins, name) for name in case["error"])
        if not isinstance(e, expected):
            return False, f"raised {got}; expected {' or '.join(case['error'])}"
        if not re.search(case["match"], str(e), re.S):
            return False, f"message {str(e)!r} does not match {case['match']!r}"
        return True, got
    if case["kind"] == "returns":
        return True, "returned"
    return False, f"no exception; expected {' or '.join(case['error'])}"


def main(path):
    with open(path) as f:
        spec = json.load(f)
    prelude = {}
    exec(spec["prelude"], prelude)
    warnings.simplefilter("ignore")  # NumPy warns on NaN arithmetic; the results are checked
    for case in spec["cases"]:
        print("START", case["id"], flush=True)
        ok, detail = outcome(case, prelude)
        print("END", case["id"], json.dumps({"ok": ok, "detail": detail[:2000]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
