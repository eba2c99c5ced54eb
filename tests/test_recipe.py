"""Recipes: every shipped YAML is valid; bad recipes fail early with the offending key named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sfpo.app.cli import app
from sfpo.app.recipe import RecipeError, apply_overrides, build_recipe, cpu_only_overrides, load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "accelerate" not in p.parts)
PAPER = sorted(p for p in (ROOT / "configs" / "paper").glob("*.yaml") if not p.stem.endswith("-gxpo"))
PAPER_GXPO = sorted((ROOT / "configs" / "paper").glob("*-gxpo.yaml"))


def load(path: Path):
    return load_recipe(path, cpu_only_overrides(yaml.safe_load(path.read_text())))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_recipe_parses_into_a_valid_config(path):
    recipe = load(path)
    passes = 3 if recipe.algorithm == "gxpo" else recipe.trainer.sfpo_inner_steps + 1  # GXPO: probe, probe, correct
    assert recipe.trainer.num_iterations == passes
    assert recipe.trainer.sfpo_max_rl_steps


@pytest.mark.parametrize("path", PAPER_GXPO, ids=lambda p: p.name)
def test_a_gxpo_paper_recipe_differs_from_its_sfpo_twin_only_in_the_update(path):
    gxpo, sfpo = load(path), load(path.with_name(path.name.replace("-gxpo", "-sfpo")))
    assert (gxpo.algorithm, sfpo.algorithm) == ("gxpo", "sfpo")
    assert (gxpo.model, gxpo.dataset, gxpo.rewards, gxpo.eval) == (sfpo.model, sfpo.dataset, sfpo.rewards, sfpo.eval)
    a, b = gxpo.trainer.to_dict(), sfpo.trainer.to_dict()
    own = {"output_dir", "run_name", "logging_dir", "num_iterations", "max_steps", "save_steps"}
    differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)} - own
    assert differ and differ <= set(a) ^ set(b)  # beyond the run's names and counts, only each algorithm's own fields
    assert (gxpo.trainer.gxpo_k, gxpo.trainer.gxpo_alpha) == (5, 0.5)


def test_paper_recipes_cover_five_models_in_both_arms_with_the_paper_settings():
    assert len(PAPER) == 10
    pairs = {}
    for path in PAPER:
        r = load(path)
        pairs.setdefault(r.model, {})[r.trainer.sfpo_inner_steps] = r
        t = r.trainer
        assert t.generation_batch_size == 2048 and t.num_generations == 8  # 256 prompts x 8
        assert t.learning_rate == 1e-6 and t.lr_scheduler_type.value == "constant"
        assert t.epsilon == 0.2 and t.entropy_coef == 0.001 and t.beta == 0.0
        assert t.sfpo_max_rl_steps == 400
        assert r.eval["every"] == 5 and r.eval["n"] == 4 and r.eval["top_p"] == 0.7
        assert len(r.eval["benchmarks"]) == 6
    assert len(pairs) == 5
    for model, arms in pairs.items():
        assert set(arms) == {0, 3}, model
        sfpo = arms[3].trainer
        assert sfpo.sfpo_alpha == (0.9 if "Qwen3" in model else 0.8)
        assert sfpo.sfpo_zscore_window == 30 and sfpo.sfpo_zscore_threshold == 1.0


BASE = {"model": "tiny", "task": "arithmetic", "trainer": {"output_dir": "x", "use_cpu": True}}


@pytest.mark.parametrize(
    "change, words",
    [
        ({"colour": 1}, ["'colour'", "the recipe"]),
        ({"trainer": {"output_dir": "x", "use_cpu": True, "learning_rat": 1}}, ["'learning_rat'", "learning_rate"]),
        ({"trainer": {"output_dir": "x", "use_cpu": True, "sfpo_alpha": 7}}, ["sfpo_alpha=7", "[0, 1]"]),
        ({"task": None, "model": "org/m", "dataset": {"names": ["nope"]}, "rewards": ["math_accuracy"]},
         ["unknown dataset 'nope'", "gsm8k"]),
        ({"task": None, "model": "org/m", "dataset": {"names": ["gsm8k"]}, "rewards": ["bogus"]},
         ["unknown reward 'bogus'", "math_accuracy"]),
        ({"task": None, "model": "org/m", "dataset": {"names": ["mbpp"]},
          "rewards": [{"name": "code_accuracy", "stdout_compare": "loose"}]},
         ["code_accuracy", "stdout_compare='loose'", "'livecodebench' or 'strict'"]),
        ({"eval": {"benchmarks": ["mathh500"]}}, ["unknown benchmark 'mathh500'"]),
        ({"eval": {"every": 0}}, ["eval.every=0"]),
        ({"model": "./no/such/model"}, ["no such local folder", "./no/such/model"]),
        ({"task": "chess"}, ["unknown task 'chess'", "arithmetic"]),
        ({"trainer": {"use_cpu": True}}, ["output_dir"]),
    ],
)
def test_bad_recipes_name_the_offending_key(change, words):
    with pytest.raises(RecipeError) as err:
        build_recipe({**BASE, **change})
    for word in words:
        assert word in str(err.value)


def test_overrides_are_read_as_yaml_and_create_missing_levels():
    raw = apply_overrides(BASE, ["trainer.learning_rate=1e-5", "eval.n=3", "trainer.sfpo_switch=none"])
    assert raw["trainer"]["learning_rate"] == 1e-5 and raw["eval"] == {"n": 3}
    assert BASE["trainer"] == {"output_dir": "x", "use_cpu": True}, "the original is not modified"
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        apply_overrides(BASE, ["trainer.learning_rate"])


def test_cli_dry_run_prints_resolved_config_without_loading(monkeypatch, tmp_path):
    import sfpo.app.pipeline

    monkeypatch.setattr(sfpo.app.pipeline, "load_policy", lambda *a, **k: pytest.fail("dry-run loaded a model"))
    path = ROOT / "configs" / "cpu" / "tiny-arithmetic-sfpo.yaml"
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--dry-run",
                                      "--set", f"trainer.output_dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout)
    assert resolved["trainer"]["sfpo_inner_steps"] == 3 and resolved["trainer"]["num_iterations"] == 4
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--set", "trainer.sfpo_alpha=2"], ["sfpo_alpha=2"]),
        (["--set", "bogus=1"], ["'bogus'"]),
        (["--set", "rewards=[nope]"], ["unknown reward 'nope'"]),
    ],
)
def test_cli_bad_recipe_exits_2(args, words):
    path = ROOT / "configs" / "cpu" / "tiny-arithmetic-sfpo.yaml"
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--dry-run", *args])
    assert result.exit_code == 2
    for word in words:
        assert word in result.output


def test_cli_missing_config_file_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output
