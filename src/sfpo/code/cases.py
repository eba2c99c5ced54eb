"""What a row's tests are, read on the host without running anything: LiveCodeBench's functional specs.

Test code (a string) and stdin/stdout cases need no reading here: the test code runs as written in the tests'
sandbox, and stdout is compared there (:mod:`sfpo.code.judge`). A functional spec ``{"fn_name", "inputs",
"outputs"}`` (LeetCode problems, as LiveCodeBench stores them: arguments and expected values as JSON) becomes
``{"mode": "functional", ...}`` for the tests' sandbox, which judges it as LiveCodeBench's harness does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["functional_tests"]

_MAX_DEPTH = 64


def _is_json_data(value: Any, depth: int = 0) -> bool:
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return True
    if depth > _MAX_DEPTH:
        return False
    if t is list:
        return all(_is_json_data(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and _is_json_data(v, depth + 1) for k, v in value.items())
    return False


def functional_tests(spec: Any) -> dict | None:
    """``{"fn_name": str, "inputs": [[arg, ...], ...], "outputs": [value, ...]}`` (JSON values) as a row for the
    tests' sandbox, or None when it is not one.

    Each case calls ``Solution().fn_name(*args)`` when the program defines ``class Solution`` with that method
    (LeetCode's starter code), else the function ``fn_name(*args)``, and expects ``outputs[i]``.
    """
    if not isinstance(spec, dict):
        return None
    name, inputs, outputs = spec.get("fn_name"), spec.get("inputs"), spec.get("outputs")
    if not isinstance(name, str) or not name.isidentifier():
        return None
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs) or not inputs:
        return None
    if not all(isinstance(args, list) for args in inputs) or not _is_json_data(outputs) or not _is_json_data(inputs):
        return None
    return {"mode": "functional", "fn_name": name, "inputs": inputs, "outputs": outputs}
