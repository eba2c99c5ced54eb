"""One reward registry: recipe validation and the training pipeline resolve and build a reward the same way."""

from __future__ import annotations

import pytest

from sfpo.app import catalog
from sfpo.app.pipeline import build_rewards
from sfpo.app.recipe import RecipeError, build_recipe
from sfpo.common.rewards import RewardSpec


def _recipe(rewards, tmp_path):
    return build_recipe({"model": "tiny", "task": "arithmetic", "rewards": rewards,
                         "trainer": {"output_dir": str(tmp_path / "run"), "use_cpu": True, "report_to": "none"}})


def test_validation_and_pipeline_build_through_the_same_factory(tmp_path, monkeypatch):
    calls = []

    def factory(scale: float = 1.0):
        calls.append(scale)

        def judge(completions, **kwargs):
            return [scale] * len(completions)

        judge.__name__ = "judge"
        return judge

    spec = RewardSpec("judge", factory, ("scale",), factory())
    monkeypatch.setitem(catalog.REWARD_SPECS, "judge", spec)
    monkeypatch.setitem(catalog.REWARDS, "judge", spec.default)
    calls.clear()
    recipe = _recipe([{"name": "judge", "scale": 0.5}, "judge"], tmp_path)
    assert calls == [0.5]  # validation built it once with the recipe's options; the bare name is the ready one
    funcs = build_rewards(recipe)
    assert calls == [0.5, 0.5]
    assert funcs[0](["a", "b"]) == [0.5, 0.5] and funcs[1] is spec.default


def test_an_option_keeps_the_other_defaults_of_that_reward():
    reward = catalog.build_reward("math_accuracy_format", {"timeout_s": 10})
    # the wrong-but-boxed score stays math_accuracy_format's 0.1 when only the timeout changes
    assert reward([r"\boxed{3}"], answer=["4"]) == [0.1]
    assert reward.__name__ == "math_accuracy_format"


@pytest.mark.parametrize(("item", "words"), [
    ({"name": "math_accuracy", "format_scor": 0.1}, ["'format_scor'", "did you mean 'format_score'", "its options"]),
    ({"name": "boxed_format", "format_score": 0.1}, ["'boxed_format' takes no options"]),
    ({"name": "code_accuracy", "memory_mb": -1}, ["'code_accuracy'", "memory"]),
    ({"name": "task", "format_score": 0.1}, ["'task'", "takes no options"]),
])
def test_bad_reward_options_name_the_reward_and_option(item, words, tmp_path):
    with pytest.raises(RecipeError) as err:
        _recipe([item], tmp_path)
    for word in words:
        assert word in str(err.value)
