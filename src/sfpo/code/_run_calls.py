"""Sandbox side of host-compared tests (:mod:`sfpo.code.cases`): the program, then each call; the values as data.

Runs as ``python -I -S -c <this file's text>`` inside the sandbox and reads one JSON object on stdin:
``program``; ``setup`` (test code run after the program, in its namespace); ``frames`` (per ``check`` function:
names bound to program names, and set-up run in that frame); ``calls`` (``{"expr": source, "frame": k}``, or
``{"fn": name, "args": [...], "frame": 0}`` for LeetCode-style problems). It prints, as its last line, a marker
and a JSON list with one entry per call: ``{"v": value}`` with the value encoded as builtin data, or
``{"e": "ExceptionName"}``.

Nothing here is trusted: the host compares these values with expected values that never enter the sandbox, so a
program that rewrites this runner, or prints a line of its own, can only report values it could have returned.
"""


def _main():
    import io
    import json
    import os
    import sys

    write, exit_ = os.write, os._exit
    payload = json.loads(sys.stdin.buffer.read())
    sys.stdin = io.StringIO("")
    sys.stdout = open(os.devnull, "w")  # what the program prints is not its answer

    def encode(value, depth=0):
        if depth > 64:
            raise ValueError("nested too deeply")
        t = type(value)
        if value is None or t is bool or t is int or t is float or t is str:
            return value
        if t is list:
            return [encode(v, depth + 1) for v in value]
        if t is tuple or t is set or t is frozenset:
            return {t.__name__: [encode(v, depth + 1) for v in value]}
        if t is dict:
            return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
        if t is bytes:
            return {"bytes": value.hex()}
        if t is complex:
            return {"complex": [value.real, value.imag]}
        raise TypeError(f"a {t.__name__} is not data")

    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    failed = None
    try:
        exec(compile(payload["program"], "<program>", "exec"), scope)
        for source in payload["setup"]:
            exec(compile(source, "<tests>", "exec"), scope)
    except BaseException as exc:  # SystemExit included: a program that exits has not answered
        failed = type(exc).__name__

    frames = {}

    def frame(k):
        if k == 0:
            return scope
        if k not in frames:
            spec = payload["frames"][k]
            local = dict(scope)
            for name, target in spec["bind"].items():
                local[name] = scope[target]
            for source in spec["setup"]:
                exec(compile(source, "<tests>", "exec"), local)
            frames[k] = local
        return frames[k]

    def run(call):
        namespace = frame(call["frame"])
        if "expr" in call:
            return eval(compile(call["expr"], "<call>", "eval"), namespace)
        solution = namespace.get("Solution")
        if isinstance(solution, type) and hasattr(solution, call["fn"]):
            return getattr(solution(), call["fn"])(*call["args"])
        return namespace[call["fn"]](*call["args"])

    parts = []
    for call in payload["calls"]:
        if failed is not None:
            parts.append(json.dumps({"e": failed}))
            continue
        try:
            parts.append(json.dumps({"v": encode(run(call))}))
        except BaseException as exc:
            parts.append(json.dumps({"e": type(exc).__name__}))
    write(1, b"\n\x1esfpo-results [" + ",".join(parts).encode() + b"]\n")
    exit_(0)  # threads the program left running do not hold the answer back


if __name__ == "__main__":
    _main()
