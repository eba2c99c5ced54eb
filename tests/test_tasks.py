"""Offline procedural tasks: fixed held-out sets, disjoint training streams, and their rewards."""

from __future__ import annotations

import random

import pytest

from sfpo.toy.tasks import (
    TASKS,
    ArithmeticTask,
    CountdownTask,
    generation_kwargs_for,
    get_task,
    parse_expression,
)

# the tiny policy's tasks; the addition tasks are below
TASK_NAMES = sorted(n for n in TASKS if not n.startswith("addition"))


@pytest.mark.parametrize("name", TASK_NAMES)
def test_eval_set_is_fixed(name):
    task = get_task(name)
    first, again = task.eval_set(64), task.eval_set(64)
    assert first["prompt"] == again["prompt"] and first["answer"] == again["answer"]
    assert len(set(first["prompt"])) == 64  # distinct problems
    # A smaller set is a prefix of a larger one: "the first n held-out problems".
    assert task.eval_set(16)["prompt"] == first["prompt"][:16]


@pytest.mark.parametrize("name", TASK_NAMES)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_training_stream_never_contains_heldout_problems(name, seed):
    task = get_task(name)
    heldout = {task.split_key(p) for p in task.eval_problems(200 if name == "pyfunc" else 300)}  # pyfunc: 220 exist
    train = task.train_problems(3000, seed=seed)
    assert not heldout & {task.split_key(p) for p in train}
    assert not any(task.is_heldout(p) for p in train)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_train_dataset_columns_and_seeding(name):
    task = get_task(name)
    data = task.train_dataset(32, seed=3)
    assert data.column_names == ["prompt", "answer"]
    assert all(isinstance(p, str) and len(p) < 40 for p in data["prompt"])  # short raw-string prompts
    assert data["prompt"] == task.train_dataset(32, seed=3)["prompt"]
    assert data["prompt"] != task.train_dataset(32, seed=4)["prompt"]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_worked_solutions_score_and_fit(name):
    task = get_task(name)
    problems = task.train_problems(500, seed=0) + task.eval_problems(100)
    if name != "pyfunc":  # the code task's solutions end in a code block; the reward below runs them
        assert all(p.solution.endswith(f"\\boxed{{{p.answer}}}") for p in problems)
    assert task.reward([p.solution for p in problems], [p.answer for p in problems]) == [1.0] * len(problems)
    # Room for every worked solution plus EOS.
    assert max(len(p.solution) for p in problems) + 1 <= generation_kwargs_for(name)["max_completion_length"]


ARITHMETIC_CASES = [
    ("7+5=12 12*3=36 36-4=32 \\boxed{32}", "32", 1.0),
    ("\\boxed{32}", "32", 1.0),
    ("the answer is \\boxed{ 32 }", "32", 1.0),
    ("\\boxed{32.0}", "32", 1.0),
    ("\\boxed{-7}", "-7", 1.0),
    ("\\boxed{7}", "-7", 0.0),
    ("\\boxed{31}", "32", 0.0),
    ("\\boxed{30} then \\boxed{32}", "32", 1.0),  # the last box counts
    ("\\boxed{32} then \\boxed{30}", "32", 0.0),
    ("32", "32", 0.0),  # missing box
    ("", "32", 0.0),
    ("\\boxed{32", "32", 0.0),  # unbalanced
    ("\\boxed{}", "32", 0.0),
    ("\\boxed{3a2}", "32", 0.0),  # garbage
    ("\\boxed{30+2}", "32", 0.0),  # an expression is not the answer
    ("}}{{\\boxed{{{", "32", 0.0),
]


@pytest.mark.parametrize(("completion", "answer", "expected"), ARITHMETIC_CASES)
def test_arithmetic_reward(completion, answer, expected):
    assert ArithmeticTask().reward([completion], [answer]) == [expected]


COUNTDOWN_CASES = [
    ("3*5=15 15+7=22 \\boxed{3*5+7}", "3*5+7", 1.0),
    ("\\boxed{7+5*3}", "3*5+7", 1.0),  # another expression, same numbers, same value
    ("\\boxed{(5*3)+7}", "3*5+7", 1.0),
    ("\\boxed{3 \\times 5 + 7}", "3*5+7", 1.0),
    ("\\boxed{3*5+7=22}", "3*5+7", 1.0),
    ("\\boxed{3*5+7=23}", "3*5+7", 0.0),
    ("\\boxed{4*4+6}", "3*5+7", 0.0),  # right value, numbers not given
    ("\\boxed{3*5+7+0}", "3*5+7", 0.0),  # an extra number
    ("\\boxed{15+7}", "3*5+7", 0.0),  # numbers missing
    ("\\boxed{3*7+5}", "3*5+7", 0.0),  # given numbers, wrong value
    ("\\boxed{22}", "3*5+7", 0.0),
    ("\\boxed{(3*5+7}", "3*5+7", 0.0),  # unbalanced parentheses
    ("\\boxed{3*5+7", "3*5+7", 0.0),  # unbalanced braces
    ("\\boxed{__import__('os')}", "3*5+7", 0.0),
    ("\\boxed{3**5+7}", "3*5+7", 0.0),
    ("\\boxed{-3*5+7+30}", "3*5+7", 0.0),
    ("\\boxed{7/(5-5)*3}", "7/(5-5)*3", 0.0),  # gold itself invalid: never crash
    ("\\boxed{8/(3-8/3)}", "8/(3-8/3)", 1.0),  # exact fractions in between
    ("3*5+7", "3*5+7", 0.0),  # missing box
    ("\\boxed{" + "(" * 500 + "3" + ")" * 500 + "}", "3", 0.0),  # absurdly nested
]


@pytest.mark.parametrize(("completion", "answer", "expected"), COUNTDOWN_CASES)
def test_countdown_reward(completion, answer, expected):
    assert CountdownTask().reward([completion], [answer]) == [expected]


def test_parse_expression_is_exact_and_safe():
    assert parse_expression("8/(3-8/3)") == (24, [8, 3, 8, 3])
    for bad in ["", "3+", "(3", "3)", "3 4", "a", "1e3", "0x10", "3//4", "2**3", "-3", "1/0", "9" * 100]:
        with pytest.raises(ValueError):
            parse_expression(bad)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_conversational_completions(name):
    task = get_task(name)
    problem = task.eval_problems(1)[0]
    good = [{"role": "assistant", "content": problem.solution}]
    bad = [{"role": "assistant", "content": "no idea"}]
    assert task.reward([good, bad, [], None], [problem.answer] * 4, prompts=["x"] * 4) == [1.0, 0.0, 0.0, 0.0]


def test_task_generation_is_reproducible():
    task = ArithmeticTask(n_operands=4, max_value=20)
    a = [task.make_problem(random.Random(5)) for _ in range(3)]
    b = [task.make_problem(random.Random(5)) for _ in range(3)]
    assert a == b
    assert all(p.question.count("=") == 1 for p in a)
    assert all(sum(c.isdigit() for c in p.question) >= 4 for p in a)


def test_difficulty_knobs_are_checked():
    with pytest.raises(ValueError, match="n_operands"):
        ArithmeticTask(n_operands=1)
    with pytest.raises(ValueError, match="ops"):
        CountdownTask(ops="+^")


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="'nope'") as error:
        get_task("nope")
    for name in TASK_NAMES:
        assert name in str(error.value)
    assert get_task(TASKS["arithmetic"]) is TASKS["arithmetic"]


def test_arithmetic_reward_agrees_with_math_accuracy_on_number_literals():
    """The task's fast integer compare and the math pipeline's math-verify check give the same scores."""
    from sfpo.math.reward import math_accuracy

    cases = [(c, a) for c, a, _ in ARITHMETIC_CASES if "+" not in c] + [
        ("\\boxed{+32}", "32"),
        ("\\boxed{1,000}", "1000"),
        ("\\boxed{1{,}000}", "1000"),
        ("\\boxed{1000.5}", "1000"),
        ("\\boxed{-0}", "0"),
    ]
    completions, answers = [c for c, _ in cases], [a for _, a in cases]
    assert ArithmeticTask().reward(completions, answers) == math_accuracy(completions, answer=answers)


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("12 + 7 = 19", 1.0),
        ("The answer is 19.", 1.0),
        ("\\boxed{19}", 1.0),
        ([{"role": "assistant", "content": "So the sum is 19"}], 1.0),
        ("12 + 7 = 20", 0.0),
        ("nineteen", 0.0),
        ("", 0.0),
    ],
)
def test_addition_reads_the_final_number(completion, expected):
    task = get_task("addition")
    assert task.reward([completion], answer=["19"]) == [expected]


@pytest.mark.parametrize("name", ["addition", "addition-50"])
def test_addition_prompts_are_chat_messages_and_held_out_set_is_fixed(name):
    task = get_task(name)
    row = task.train_dataset(3, seed=0)[0]
    assert row["prompt"][0]["role"] == "user" and "Give the final answer" in row["prompt"][0]["content"]
    first, again = task.eval_set(100), task.eval_set(100)
    assert first["answer"] == again["answer"] and len(first) == 100
    held = {m[0]["content"] for m in first["prompt"]}
    assert not held & {m[0]["content"] for m in task.train_dataset(500, seed=3)["prompt"]}


def test_addition_50_has_200_distinct_held_out_problems_and_addition_does_not():
    wide = get_task("addition-50")
    problems = wide.eval_problems(200)
    assert len({p.question for p in problems}) == 200
    assert max(int(x) for p in problems for x in p.question.split("?")[0].split()[2::2]) > 30  # operands past 30
    with pytest.raises(ValueError, match="distinct held-out problems"):
        get_task("addition").eval_problems(200)
