"""`sfpo demo` and `sfpo train` build the trainer through one function, `sfpo.app.pipeline.train`."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sfpo.algorithm.trainer as trainer_module
from sfpo.app.cli import app
from sfpo.app.demo import DemoSettings, arm_recipe, build_policy, run_arm

ROOT = Path(__file__).resolve().parents[1]


class _Built(Exception):
    """Raised by the patched trainer constructor: the test needs only to know who constructed it."""


@pytest.fixture
def constructed(monkeypatch):
    callers = []

    def record(self, *args, **kwargs):
        frame = inspect.stack()[1]
        callers.append((frame.frame.f_globals["__name__"], frame.function, kwargs.get("args")))
        raise _Built

    monkeypatch.setattr(trainer_module.SFPOTrainer, "__init__", record)
    return callers


def test_demo_and_train_construct_the_trainer_in_the_same_function(constructed, tmp_path):
    settings = DemoSettings(steps=2, eval_every=1, eval_problems=8, arms=("sfpo",))
    policy = build_policy(settings)
    with pytest.raises(_Built):
        run_arm(settings, "sfpo", policy, tmp_path / "demo-arm")
    recipe = ROOT / "configs" / "cpu" / "tiny-arithmetic-sfpo.yaml"
    result = CliRunner().invoke(app, ["train", "--config", str(recipe), "--set",
                                      f"trainer.output_dir={tmp_path / 'train-run'}"])
    assert isinstance(result.exception, _Built), result.output
    assert [c[:2] for c in constructed] == [("sfpo.app.pipeline", "train")] * 2
    demo_args, train_args = constructed[0][2], constructed[1][2]
    assert demo_args.sfpo_inner_steps == train_args.sfpo_inner_steps == 3


def test_a_demo_arm_is_a_recipe_sfpo_train_accepts(tmp_path):
    settings = DemoSettings(steps=2, eval_every=1, eval_problems=8, arms=("grpo", "sfpo"))
    policy = build_policy(settings)
    grpo = arm_recipe(settings, "grpo", policy, tmp_path / "grpo")
    sfpo = arm_recipe(settings, "sfpo", policy, tmp_path / "sfpo")
    # the arms differ only in their own fields
    a, b = grpo.trainer.to_dict(), sfpo.trainer.to_dict()
    differ = {k for k in a if a[k] != b[k]} - {"output_dir", "logging_dir"}
    assert differ == {"sfpo_inner_steps", "num_iterations", "max_steps"}
    assert grpo.eval["benchmarks"] == [settings.task] and grpo.dataset == {"limit": settings.train_problems}
