"""GXPO in the tools: a recipe's `algorithm`, the demo's `gxpo` arm, estimates and compare's switch step."""

from __future__ import annotations

import pytest

from sfpo.algorithm.config import GXPOConfig, SFPOConfig
from sfpo.app.demo import ARMS, DemoSettings, arm_recipe, build_policy, estimate_seconds, passes_per_batch
from sfpo.app.pipeline import _check_same_run
from sfpo.app.recipe import RecipeError, build_recipe, resolved_yaml
from sfpo.app.report import stability
from sfpo.app.runs import Run


def _raw(tmp_path, **trainer):
    return {"model": "tiny", "task": "arithmetic",
            "trainer": {"output_dir": str(tmp_path / "run"), "use_cpu": True, "report_to": "none", **trainer}}


def test_a_recipe_picks_its_algorithm_and_that_algorithm_s_fields(tmp_path):
    assert isinstance(build_recipe(_raw(tmp_path)).trainer, SFPOConfig)  # the default
    recipe = build_recipe({**_raw(tmp_path, gxpo_k=3), "algorithm": "gxpo"})
    assert isinstance(recipe.trainer, GXPOConfig) and recipe.trainer.gxpo_k == 3 and recipe.algorithm == "gxpo"
    assert "algorithm: gxpo" in resolved_yaml(recipe)


@pytest.mark.parametrize(("raw", "words"), [
    ({"algorithm": "gxpo2"}, ["algorithm='gxpo2'", "did you mean 'gxpo'"]),
    ({"algorithm": "gxpo", "trainer_extra": {"sfpo_inner_steps": 3}}, ["unknown key 'sfpo_inner_steps'", "GXPOConfig"]),
    ({"algorithm": "gxpo", "trainer_extra": {"gxpo_k": 1}}, ["gxpo_k=1", "int ≥ 2"]),
    ({"trainer_extra": {"gxpo_k": 5}}, ["unknown key 'gxpo_k'", "SFPOConfig"]),
])
def test_bad_algorithm_settings_name_the_key(raw, words, tmp_path):
    base = _raw(tmp_path, **raw.pop("trainer_extra", {}))
    with pytest.raises(RecipeError) as err:
        build_recipe({**base, **raw})
    for word in words:
        assert word in str(err.value)


def test_a_run_started_before_the_algorithm_key_resumes_as_sfpo(tmp_path):
    recipe = build_recipe(_raw(tmp_path))
    saved = tmp_path / "config.yaml"
    saved.write_text(resolved_yaml(recipe).replace("algorithm: sfpo\n", ""))
    _check_same_run(recipe, saved)  # no error: a missing key meant SFPO
    gxpo = build_recipe({**_raw(tmp_path), "algorithm": "gxpo"})
    with pytest.raises(RecipeError, match="algorithm"):
        _check_same_run(gxpo, saved)


def test_the_demo_s_gxpo_arm_takes_the_demo_s_switch_as_its_own(tmp_path):
    settings = DemoSettings(steps=24, switch="step", stop_step=12, arms=("grpo", "gxpo"))
    recipe = arm_recipe(settings, "gxpo", build_policy(settings), tmp_path / "gxpo")
    cfg = recipe.trainer
    assert isinstance(cfg, GXPOConfig) and (cfg.gxpo_switch, cfg.gxpo_stop_step) == ("step", 12)
    assert (cfg.gxpo_k, cfg.gxpo_alpha) == (ARMS["gxpo"]["gxpo_k"], ARMS["gxpo"]["gxpo_alpha"])
    entropy = arm_recipe(DemoSettings(), "gxpo", build_policy(settings), tmp_path / "gxpo2").trainer
    assert (entropy.gxpo_zscore_window, entropy.gxpo_switch_warmup, entropy.gxpo_switch_patience) == (10, 15, 3)


def test_the_estimate_prices_gxpo_by_its_three_passes():
    assert [passes_per_batch(a) for a in ("grpo", "sfpo", "grpo-k4", "gxpo")] == [1, 4, 4, 3]
    one = {arm: estimate_seconds(DemoSettings(arms=(arm,))) for arm in ("grpo", "sfpo", "gxpo")}
    assert one["grpo"] < one["gxpo"] < one["sfpo"]


def test_compare_finds_the_switch_step_of_a_gxpo_run():
    records = [{"rl_step": i, "rollouts": 64 * i, "gxpo/active": int(i <= 3)} for i in range(1, 7)]
    assert stability(Run(name="gxpo", path=None, records=records))["switch_rl_step"] == 4
