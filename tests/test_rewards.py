"""Tests for sfpo.rewards: extraction, answer checking (math-verify behind worker processes), rewards."""

from __future__ import annotations

import os
import threading
import time

import pytest

from sfpo.app.catalog import REWARDS, get_reward
from sfpo.common.text import extract_answer, extract_boxed
from sfpo.math import reward as R
from sfpo.math.reward import (
    boxed_format,
    check_many,
    is_correct,
    make_math_accuracy,
    math_accuracy,
    math_accuracy_format,
    normalize_gold,
)

# ------------------------------------------------------------------------------------------------------
# Extraction
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{5}", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\fbox{7}", "7"),
        ("\\boxed{ {a}{b} }", "{a}{b}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{\\left\\{ x \\right.}", "\\left\\{ x \\right."),
        ("the answer is \\boxed 5.", "5"),
        ("$\\boxed{x = 3}$.", "x = 3"),
        ("\\boxed{\\boxed{4}}", "4"),
        ("\\boxed{}", ""),
        ("\\boxed{1} and then \\boxed{2", None),  # truncated last box: no answer
        ("no box here", None),
        ("\\boxedx{3}", None),
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("... \\boxed{12} ... The answer is 13", "12"),
        ("Work.\n#### 1,234", "1,234"),
        ("So the final answer is $\\frac{1}{2}$. Done.", "\\frac{1}{2}"),
        ("Answer: 42", "42"),
        ("We get 3 apples, then 5 pears, 7 in total", "7"),
        ("It is -1,500.5 or so", "-1500.5"),
        ("nothing numeric", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("gold", "expected"),
    [
        ("She makes 9 * 2 = <<9*2=18>>18 dollars.\n#### 18", "18"),
        ("Total 1,000 + 250.\n#### 1,250", "1250"),
        ("#### -3", "-3"),
        ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("$3\\sqrt{2}$", "3\\sqrt{2}"),
        (["$2$", "$-2$"], "2, -2"),
        (27.0, "27"),
        (14, "14"),
        (None, ""),
        ("  (1, 2)  ", "(1, 2)"),
    ],
)
def test_normalize_gold(gold, expected):
    assert normalize_gold(gold) == expected


# ------------------------------------------------------------------------------------------------------
# Answer checking
# ------------------------------------------------------------------------------------------------------

EQUIVALENT = [
    ("0.5", "\\frac{1}{2}"),
    ("1/2", "\\frac{1}{2}"),
    ("\\dfrac{1}{2}", "0.5"),
    ("\\tfrac12", "\\frac{1}{2}"),
    ("[1, 3)", "[1,3)"),
    ("\\text{5 cm}", "5"),
    ("5 \\text{cm}", "5"),
    ("5\\%", "5"),
    ("x = 3", "3"),
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}"),
    ("1,000", "1000"),
    ("1{,}000", "1000"),
    ("1\\,000", "1000"),
    ("18 dollars", "18"),
    ("\\$18", "18"),
    ("18.00", "18"),
    ("3.", "3"),
    ("24", "024"),
    ("\\frac{\\pi}{2}", "\\pi/2"),
    ("6.283185307", "2\\pi"),
    ("\\{2, 1\\}", "\\{1, 2\\}"),
    ("(1, 2)", "(1,2)"),
    ("1+x^2", "x^2+1"),
    ("\\frac{\\sqrt{27}}{4}", "\\frac{3\\sqrt{3}}{4}"),
    ("90^\\circ", "90"),
    ("\\text{(B)}", "B"),
    ("(-\\infty, 2]", "(-\\infty,2]"),
    ("[2,5)", "2\\le x<5"),
]

WRONG = [
    ("\\frac{2}{3}", "\\frac{1}{2}"),
    ("13", "12"),
    ("1.414", "\\sqrt{2}"),  # six-decimal rounding: not close enough
    ("(2,1)", "(1,2)"),
    ("[1,3]", "(1,3]"),
    ("x^2-1", "x^2+1"),
    ("2 \\pi", "2"),  # "pi" is not a unit word
    ("\\{1\\}", "\\{1,2\\}"),
    ("", "5"),
    ("5", ""),
]


# Equal in meaning but not verified by math-verify 0.9 (documented in sfpo.rewards).
NOT_VERIFIED = [
    # An inequality against an interval gold: math-verify compares a relation and a set only when the
    # prediction is the set.
    ("2\\le x<5", "[2,5)"),
    ("\\text{ten}", "10"),  # number words
    ("60^\\circ", "\\frac{\\pi}{3}"),  # degrees against radians
    ("e^{i\\pi}", "-1"),
]


@pytest.mark.parametrize(("pred", "gold"), NOT_VERIFIED)
def test_known_unverified_forms(pred, gold):
    assert is_correct(pred, gold) is False


@pytest.mark.parametrize(("pred", "gold"), EQUIVALENT)
def test_is_correct_equivalent_forms(pred, gold):
    assert is_correct(pred, gold) is True


@pytest.mark.parametrize(("pred", "gold"), WRONG)
def test_is_correct_wrong(pred, gold):
    assert is_correct(pred, gold) is False


def test_check_many_matches_single_checks_and_dedupes():
    pairs = EQUIVALENT + WRONG + EQUIVALENT  # duplicates are checked once, answered for every position
    out = check_many(pairs)
    assert out == [True] * len(EQUIVALENT) + [False] * len(WRONG) + [True] * len(EQUIVALENT)


@pytest.mark.parametrize("bad", [None, 5, b"5", ["5"]])
def test_is_correct_non_string_input_is_false(bad):
    assert is_correct(bad, "5") is False
    assert is_correct("5", bad) is False


# Inputs that hang or exhaust sympy when evaluated, or that are simply broken.
PATHOLOGICAL = [
    "\\boxed{9^{9^{9^{9}}}}",
    "9^{9^{9^{9}}}",
    "10^{10^{10^{10}}}",
    "9^{9^{9}}",
    "9**9**9**9",
    "((((9!)!)!)!)",
    "(9!)!",
    "9!!!!!!",
    "7" * 5000,
    "1" * 999,
    "(" * 500 + "1" + ")" * 500,
    "(" * 300 + "1" + ")" * 300,
    "\\frac{1}{" * 500 + "2" + "}" * 500,
    "\\frac{1}{" * 60 + "2" + "}" * 60,
    "\\sqrt{" * 100 + "2" + "}" * 100,
    "x" * (1 << 20),
    "\\boxed{{{{",
    "}}}{{{\\frac{",
    "\\left( \\right",
    "\x00\x00 9 \x00",
    "\ud800",
    "\\begin{pmatrix}" + "1&" * 300 + "1\\end{pmatrix}",
    "2^{1000000}",
    "\\int_0^\\infty e^{-x^2} dx",
]


def test_pathological_inputs_are_bounded_and_never_raise():
    start = time.monotonic()
    out = check_many([(p, "5") for p in PATHOLOGICAL], timeout_s=2.0)
    assert out == [False] * len(PATHOLOGICAL)
    # One by one as well: each check is bounded on its own (soft alarm, then a hard kill).
    for p in PATHOLOGICAL[:8]:
        assert is_correct(p, "5", timeout_s=2.0) is False
    assert time.monotonic() - start < 30
    # The pool still works after timeouts and restarts.
    assert is_correct("\\frac{4}{8}", "0.5") is True


def test_hard_timeout_kills_and_replaces_the_worker(monkeypatch):
    is_correct("1/2", "0.5")  # warm pool
    # Make the parent's hard deadline fire long before the worker's own soft alarm.
    monkeypatch.setattr(R, "_HARD_GRACE_S", -1.5)
    start = time.monotonic()
    assert is_correct("9^{9^{9}}", "5", timeout_s=2.0) is False
    assert time.monotonic() - start < 1.9
    monkeypatch.undo()
    assert is_correct("\\frac{4}{8}", "0.5") is True


def test_pathological_completions_through_reward():
    completions = ["\\boxed{" + p + "}" for p in PATHOLOGICAL[:6]] + ["x" * (1 << 20) + "\\boxed{5", "\x00"]
    start = time.monotonic()
    rewards = make_math_accuracy(0.0, timeout_s=2.0)(completions, answer=["5"] * len(completions))
    assert rewards == [0.0] * len(completions)
    assert time.monotonic() - start < 30


def test_extraction_on_a_megabyte_is_fast():
    garbage = ("\\boxed{" + "{" * 50 + "x") * 20000
    start = time.monotonic()
    assert extract_boxed(garbage) is None
    extract_answer(garbage + " 7")
    assert time.monotonic() - start < 2


def test_works_from_threads():
    results: dict[int, object] = {}

    def work(i: int) -> None:  # an exception would leave results[i] unset and fail the check below
        results[i] = (
            is_correct("\\frac{1}{2}", "0.5"),
            math_accuracy(["\\boxed{\\dfrac{3}{6}}", "\\boxed{2}"], answer=["1/2", "1/2"]),
        )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: (True, [1.0, 0.0]) for i in range(4)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_works_in_a_forked_child():
    assert is_correct("\\frac{2}{4}", "0.5")  # the parent's pool is warm before the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = is_correct("\\sqrt{8}", "2\\sqrt{2}") and not is_correct("\\sqrt{8}", "3")
        R.shutdown_verifier()
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:  # pragma: no cover
        os.kill(pid, 9)
        pytest.fail("forked child did not finish")
    assert os.waitstatus_to_exitcode(status) == 0
    assert is_correct("\\frac{3}{6}", "0.5")  # the parent's pool is untouched


# ------------------------------------------------------------------------------------------------------
# Reward functions
# ------------------------------------------------------------------------------------------------------

TRL_KWARGS = {"prompts": ["p"], "trainer_state": object(), "completion_ids": [[1]], "log_metric": print}


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    ("completion", "gold", "accuracy", "with_format", "fmt"),
    [
        ("Thus \\boxed{18}.", "18", 1.0, 1.0, 1.0),
        ("Thus \\boxed{17}.", "18", 0.0, 0.1, 1.0),
        ("The answer is 18.", "18", 0.0, 0.0, 0.0),  # right but not boxed: the paper's rule gives 0
        ("", "18", 0.0, 0.0, 0.0),
        ("\\boxed{}", "18", 0.0, 0.0, 0.0),
        ("\\boxed{18", "18", 0.0, 0.0, 0.0),
        ("First \\boxed{18}, no wait, \\boxed{20}", "18", 0.0, 0.1, 1.0),
        (conv("so $\\boxed{\\frac{1}{2}}$"), "0.5", 1.0, 1.0, 1.0),
        (conv("so $\\boxed{0.6}$"), "\\frac{1}{2}", 0.0, 0.1, 1.0),
        ([{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{7}"}]}], "7", 1.0, 1.0, 1.0),
        ("Total: \\boxed{1,335}", "He pays 1250 + 85 = <<1250+85=1335>>1,335.\n#### 1,335", 1.0, 1.0, 1.0),
        ("\\boxed{\\$1335}", "#### 1,335", 1.0, 1.0, 1.0),
        ("\\boxed{24}", "024", 1.0, 1.0, 1.0),
        ("\\boxed{x = 3}", "3", 1.0, 1.0, 1.0),
        ("\\boxed{2, -2}", ["$-2$", "$2$"], 1.0, 1.0, 1.0),
        ("\\boxed{55}", 55.0, 1.0, 1.0, 1.0),
    ],
)
def test_reward_table(completion, gold, accuracy, with_format, fmt):
    assert math_accuracy([completion], answer=[gold], **TRL_KWARGS) == [accuracy]
    assert math_accuracy_format([completion], answer=[gold], **TRL_KWARGS) == [with_format]
    assert boxed_format([completion], **TRL_KWARGS) == [fmt]


def test_custom_format_score_and_lenient_extraction():
    fn = make_math_accuracy(format_score=0.25)
    assert fn.__name__ == "math_accuracy_format"
    assert fn(["\\boxed{2}", "\\boxed{2}", "2"], answer=["2", "3", "3"]) == [1.0, 0.25, 0.0]
    lenient = make_math_accuracy(require_boxed=False, name="math_accuracy_any")
    assert lenient.__name__ == "math_accuracy_any"
    assert lenient(["The answer is 2.", "#### 3", "so 4", "\\boxed{5}"], answer=["2", "3", "4", "6"]) == [
        1.0,
        1.0,
        1.0,
        0.0,
    ]


@pytest.mark.parametrize(
    "bad", [{"format_score": -0.1}, {"format_score": 2}, {"timeout_s": 0}, {"timeout_s": "x"}]
)
def test_make_math_accuracy_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        make_math_accuracy(**bad)


def test_reward_needs_answer_column():
    with pytest.raises(ValueError, match="'answer' column"):
        math_accuracy(["\\boxed{1}"], prompts=["p"])
    with pytest.raises(ValueError, match="2 completions but 1 gold"):
        math_accuracy(["\\boxed{1}", "\\boxed{2}"], answer=["1"])


def test_registry_names_and_errors():
    assert {"math_accuracy", "math_accuracy_format", "boxed_format"} <= set(REWARDS)
    for name, fn in REWARDS.items():
        assert get_reward(name) is fn
        assert fn.__name__ == name  # TRL names its metrics after __name__
    with pytest.raises(ValueError, match=r"unknown reward 'nope'.*math_accuracy"):
        get_reward("nope")


def test_batch_of_256_is_quick():
    golds = [str(n) for n in range(32)]
    completions, answers = [], []
    for g in golds:
        for k in range(8):
            body = "Let me think step by step. " * 40
            forms = [g, str(int(g) + 1), f"\\frac{{{2 * int(g)}}}{{2}}", f"{g}.0", f"\\text{{{g} apples}}"]
            answer = forms[k % 5]
            completions.append(body + f"So the answer is $\\boxed{{{answer}}}$." if k != 7 else body)
            answers.append(f"#### {g}")
    math_accuracy(completions[:8], answer=answers[:8])  # start the workers outside the timing
    start = time.monotonic()
    rewards = math_accuracy(completions, answer=answers)
    elapsed = time.monotonic() - start
    print(f"\n256 completions scored in {elapsed:.3f} s")
    assert len(rewards) == 256
    assert rewards[:8] == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert elapsed < 20
