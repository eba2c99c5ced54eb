"""GXPO (sfpo.algorithm.gxpo): the retention and extrapolation against hand computations, the stages in the
optimizer's step hooks on a manual loop, and GXPOTrainer against SFPOTrainer and GRPO where they must agree."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import TrainerCallback

from _tiny_config import tiny_cpu
from conftest import digit_reward
from sfpo import GXPOConfig, GXPOTrainer, SFPOConfig, SFPOTrainer
from sfpo.algorithm.checkpoint import rank_file
from sfpo.algorithm.extrapolation import CORRECTIVE, PROBE_1, PROBE_2, GXPOInStep
from sfpo.algorithm.reposition import Anchor, OptimizerStateCopy, stepped_tensors
from sfpo.algorithm.retention import q_quantile, q_stats, retention_scale

# ---------------------------------------------------------------------------------------------- the retention


def s(n: int, r: float) -> float:
    return sum(r**i for i in range(n))


def test_retention_scale_is_s_k_over_s_2_with_its_clamps():
    k = 5
    r = torch.tensor([0.0, 0.5, -0.5, 1.0, 5.0, -1.0, float("nan"), float("inf"), -3.0, 0.9])
    q = retention_scale(r, k)
    expected = [1.0, s(5, 0.5) / s(2, 0.5), s(5, -0.5) / s(2, -0.5), 2.5,
                3.5,  # r clamped to 3: S_5(3)/S_2(3) = 30.25, then q to K/2 + 1
                1.0,  # S_2(−1) = 0: the two steps cancel
                2.5,  # a non-finite r counts as 1
                2.5,
                1.0,  # r clamped to −2: S_5(−2)/S_2(−2) = −11, then q to 1
                s(5, 0.9) / s(2, 0.9)]
    torch.testing.assert_close(q, torch.tensor(expected), rtol=1e-6, atol=1e-6)
    assert torch.equal(retention_scale(torch.linspace(-2, 3, 50), 2), torch.ones(50))  # K = 2: q ≡ 1


def test_logged_quantiles_from_the_histogram():
    k = 5
    q = torch.cat([torch.ones(50), torch.full((10,), 3.5), torch.linspace(1.5, 2.5, 40)])
    stats = q_stats(q, k, torch.tensor(4.0)).tolist()
    assert stats[:6] == [100.0, float(q.sum()), 50.0, 10.0, 50.0, 4.0]
    assert q_quantile(stats, k, 0.1) == 1.0 and q_quantile(stats, k, 0.95) == 3.5
    exact = torch.quantile(q, 0.7).item()
    assert abs(q_quantile(stats, k, 0.7) - exact) <= (k / 2) / 100  # within one bin


# ---------------------------------------------------------------------------------------------- the stages in a loop


def minibatch(params, opt, hooks, loss_fn, clip=None):
    """One GXPO mini-batch on a manual loop: three optimizer steps on the same loss, each stage armed before its
    backward as the trainer does. Returns the parameters after probe 2 (θ̃) and the corrective gradient."""
    seen = {}
    for stage in (PROBE_1, PROBE_2, CORRECTIVE):
        hooks.expect_step(True, stage=stage)
        opt.zero_grad()
        loss_fn().backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if stage == CORRECTIVE:
            seen["theta_tilde"] = [p.detach().clone() for p in params]
            seen["grad"] = [p.grad.clone() for p in params]
        opt.step()
        hooks.settle()
    return seen


def hooks_for(opt, params, k, alpha, retention, transactional=True):
    return GXPOInStep(opt, params, Anchor(), OptimizerStateCopy(), k=k, alpha=alpha, retention=retention,
                      transactional=transactional)


@pytest.mark.parametrize("retention", ["gradient", "adamw_direction"])
@pytest.mark.parametrize("k", [3, 5, 10])
def test_corollary_2_extrapolation_plus_corrective_step_is_k_plus_1_descent_steps(k, retention):
    """Diagonal quadratic ½ Σ h θ², plain gradient descent (SGD, no momentum, no decay), α = 1: each coordinate's
    step shrinks by r = 1 − ηh, so θ̃ = θ_K and the corrective step lands on θ_{K+1}. (Under SGD the optimizer's
    direction is the gradient, so both estimators read the same r.)"""
    torch.manual_seed(0)
    h = torch.tensor([0.2, 0.5, 1.0, 1.5, 3.0], dtype=torch.float64)
    theta0 = torch.tensor([1.0, -2.0, 0.5, 3.0, -0.7], dtype=torch.float64)
    lr = 0.3  # r = 1 − ηh in [0.1, 0.94]: inside the clamps, q ≤ K/2
    theta = torch.nn.Parameter(theta0.clone())
    opt = torch.optim.SGD([theta], lr=lr)
    hooks = hooks_for(opt, [theta], k, 1.0, retention)
    seen = minibatch([theta], opt, hooks, lambda: 0.5 * (h * theta**2).sum())
    torch.testing.assert_close(seen["theta_tilde"][0], (1 - lr * h) ** k * theta0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(theta.detach(), (1 - lr * h) ** (k + 1) * theta0, rtol=1e-12, atol=1e-12)
    assert not hooks.theta0_live  # released after the corrective step


def adamw_by_hand(theta, m, v, t, g, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """One AdamW step on plain floats, as torch.optim.AdamW computes it."""
    theta = theta * (1 - lr * wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    theta = theta - (lr / (1 - b1**t)) * m / (math.sqrt(v) / math.sqrt(1 - b2**t) + eps)
    return theta, m, v


def clip_factor(grads, c):
    norm = math.sqrt(sum(g * g for g in grads))
    return min(1.0, c / (norm + 1e-6))


@pytest.mark.parametrize("retention", ["adamw_direction", "gradient"])
def test_extrapolation_by_hand_on_a_two_parameter_model_with_adamw(retention):
    """L = ½·h_a·a² + ½·h_b·b² (+ c, which gets no gradient), AdamW with decay, clipped gradients, K = 5, α = 0.5.
    h_a < 0 makes a's gradient grow (its ratio passes 3: both clamps bind), b crosses zero, c's first step is zero
    (inactive: q = 1). Every number is recomputed here in float64 from the update rules."""
    k, alpha, lr, wd, clip = 5, 0.5, 0.01, 0.1, 0.5
    h = {"a": -2.0, "b": 3.0, "c": 0.0}
    start = {"a": lr / 4, "b": 0.6 * lr, "c": 0.3}
    params = {n: torch.nn.Parameter(torch.tensor([v], dtype=torch.float64)) for n, v in start.items()}
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=wd)
    hooks = hooks_for(opt, list(params.values()), k, alpha, retention)

    def loss():
        return sum(0.5 * h[n] * p.pow(2).sum() for n, p in params.items())

    seen = minibatch(list(params.values()), opt, hooks, loss, clip=clip)

    names = list(start)
    theta = dict(start)
    state = {n: (0.0, 0.0) for n in names}
    steps, grads = [], []
    for t in (1, 2):  # the two probes
        g = {n: h[n] * theta[n] for n in names}
        c = clip_factor(g.values(), clip)
        g = {n: c * g[n] for n in names}
        new = {}
        for n in names:
            new[n], *state[n] = adamw_by_hand(theta[n], *state[n], t, g[n], lr, wd)
        steps.append({n: ((1 - lr * wd) * theta[n] - new[n]) / lr for n in names})  # directions d_t
        grads.append(g)
        theta = new
    first, second = (steps if retention == "adamw_direction" else grads)
    rms = math.sqrt(sum(first[n] ** 2 for n in names) / len(names))
    expected_q = {}
    for n in names:
        if abs(first[n]) > 1e-3 * rms:
            r = min(max(second[n] / first[n], -2.0), 3.0)
            expected_q[n] = min(max(s(k, r) / s(2, r), 1.0), k / 2 + 1)
        else:
            expected_q[n] = 1.0
    assert expected_q["c"] == 1.0 and 1.0 < expected_q["b"] < 3.5
    if retention == "gradient":  # a's gradient grows 5× in one step: r clamped to 3, then q to K/2 + 1
        assert expected_q["a"] == 3.5
    else:  # AdamW's direction grows far less (its second moment catches up): q stays inside the bounds
        assert 1.0 < expected_q["a"] < 3.5
    for i, n in enumerate(names):
        want = start[n] + alpha * expected_q[n] * (theta[n] - start[n])
        assert seen["theta_tilde"][i].item() == pytest.approx(want, rel=1e-9, abs=1e-15), n


def test_transactional_restore_is_exact():
    """After a mini-batch the optimizer state is one AdamW step from s0 with the corrective gradient, and the
    weights are that step from θ̃; with "keep" the state has advanced three times."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randn(8, 3)

    def loss():
        return ((model(x) - y) ** 2).mean()

    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    loss().backward()
    opt.step()  # s0 is a real state (step 1), not an empty one
    s0 = copy.deepcopy(opt.state_dict())
    hooks = hooks_for(opt, params, 5, 0.5, "adamw_direction")
    seen = minibatch(params, opt, hooks, loss)

    ref_params = [torch.nn.Parameter(t.clone()) for t in seen["theta_tilde"]]
    ref = torch.optim.AdamW(ref_params, lr=1e-2, weight_decay=0.01)
    ref.load_state_dict(s0)
    for p, g in zip(ref_params, seen["grad"]):
        p.grad = g
    ref.step()
    for p, q in zip(params, ref_params):
        assert torch.equal(p.detach(), q.detach())
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][key], ref.state[q][key]), key
    assert float(opt.state[params[0]]["step"]) == 2.0

    keep = hooks_for(opt, params, 5, 0.5, "adamw_direction", transactional=False)
    hooks.remove()
    minibatch(params, opt, keep, loss)
    assert float(opt.state[params[0]]["step"]) == 5.0


def test_a_probe_without_gradient_falls_back_to_one_plain_step():
    """A zero gradient (no reward signal) gives nothing to extrapolate from: θ0 and s0 come back after the probes,
    so the mini-batch is one plain AdamW step from (θ0, s0)."""
    theta = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = torch.optim.AdamW([theta], lr=0.1, weight_decay=0.1)
    hooks = hooks_for(opt, [theta], 5, 0.5, "adamw_direction")
    seen = minibatch([theta], opt, hooks, lambda: 0.0 * theta.sum())
    assert torch.equal(seen["theta_tilde"][0], torch.tensor([1.0, -1.0]))
    assert hooks.take_minibatch()[0] == 1  # counted as a fallback
    torch.testing.assert_close(theta.detach(), torch.tensor([1.0, -1.0]) * (1 - 0.1 * 0.1))
    assert float(opt.state[theta]["step"]) == 1.0


def test_lora_sized_buffers_only_hold_the_stepped_tensors():
    frozen, trained = torch.nn.Parameter(torch.ones(100), requires_grad=False), torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([frozen, trained], lr=0.1)
    hooks = hooks_for(opt, [frozen, trained], 5, 0.5, "adamw_direction")
    minibatch([trained], opt, hooks, lambda: (trained**2).sum() + (frozen * 0).sum())
    assert [b.numel() for b in hooks.buffers] == [3] and hooks.extra_nbytes == 3 * 4
    assert hooks.anchor.nbytes == 3 * 4


# ---------------------------------------------------------------------------------------------- the trainer

COMMON = tiny_cpu(
    per_device_train_batch_size=4, num_generations=4, max_completion_length=6, learning_rate=5e-3,
    lr_scheduler_type="constant", seed=0, shuffle_dataset=False, logging_steps=1,
)


def gxpo_args(out, **overrides) -> GXPOConfig:
    return GXPOConfig(output_dir=str(out), **{**COMMON, "gxpo_switch": "none", **overrides})


def sfpo_args(out, **overrides) -> SFPOConfig:
    return SFPOConfig(output_dir=str(out), **{**COMMON, "sfpo_switch": "none", **overrides})


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def run(cls, model, args, data, reward=digit_reward, **kw):
    trainer = cls(model=model, reward_funcs=reward, args=args, train_dataset=data, **kw)
    trainer.train()
    return trainer


def adam_steps(trainer) -> set[float]:
    opt = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    return {float(opt.state[p]["step"]) for p in stepped_tensors(opt)}


class RLSteps(TrainerCallback):
    def __init__(self):
        self.records = []

    def on_rl_step_end(self, args, state, control, metrics=None, **kwargs):
        self.records.append(dict(metrics))


class Slices(GXPOTrainer):
    """Records which buffered slice each micro-step trained on, and the optimizer step it fed."""

    def _prepare_inputs(self, generation_batch):
        inputs = super()._prepare_inputs(generation_batch)
        if self.model.training:
            index = next(i for i, b in enumerate(self._buffered_inputs) if b is inputs)
            self.seen = [*getattr(self, "seen", []), index]
        return inputs


def test_config_defaults_and_num_iterations(tmp_path):
    args = GXPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    assert (args.gxpo_k, args.gxpo_alpha, args.gxpo_retention, args.gxpo_optimizer_state) == (
        5, 0.5, "adamw_direction", "transactional")
    assert (args.gxpo_switch, args.gxpo_zscore_window, args.gxpo_zscore_threshold) == ("entropy_zscore", 30, 3.0)
    assert (args.gxpo_switch_patience, args.gxpo_switch_warmup, args.num_iterations) == (3, 50, 3)
    budget = GXPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], steps_per_generation=4,
                        gradient_accumulation_steps=2, sfpo_max_rl_steps=10)
    assert budget.max_steps == 10 * 3 * 2  # 3 passes × 2 mini-batches per RL step


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("gxpo_k", 1, "int ≥ 2"),
        ("gxpo_k", 2.5, "int ≥ 2"),
        ("gxpo_k", True, "int ≥ 2"),
        ("gxpo_alpha", 0.0, "(0, 1]"),
        ("gxpo_alpha", 1.5, "(0, 1]"),
        ("gxpo_alpha", float("nan"), "(0, 1]"),
        ("gxpo_retention", "grad", "'adamw_direction' or 'gradient'"),
        ("gxpo_optimizer_state", "restore", "'transactional' or 'keep'"),
        ("gxpo_switch", "entropy", "'entropy_zscore', 'step', 'none'"),
        ("gxpo_stop_step", 4, "gxpo_switch='step'"),
        ("gxpo_zscore_window", 1, "int ≥ 2"),
        ("gxpo_zscore_threshold", 0, "> 0"),
        ("gxpo_switch_patience", 0, "int ≥ 1"),
        ("gxpo_switch_warmup", -1, "int ≥ 0"),
        ("num_iterations", 4, "follows from the algorithm"),
        ("sfpo_max_rl_steps", 0, "int ≥ 1"),
        ("sfpo_anchor_device", "cuda", "'same' or 'cpu'"),
    ],
)
def test_bad_values_raise_naming_field_value_and_allowed(tmp_path, field, value, message):
    with pytest.raises(ValueError) as err:
        GXPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **{field: value})
    text = str(err.value)
    assert field in text and repr(value) in text and message in text


def test_what_only_some_settings_use_is_refused_elsewhere(tmp_path):
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match=r"gxpo_switch_patience=2 only applies to the entropy switch"):
        GXPOConfig(**base, gxpo_switch="none", gxpo_switch_patience=2)
    with pytest.raises(ValueError, match=r"gxpo_stop_step=None is not allowed"):
        GXPOConfig(**base, gxpo_switch="step")
    with pytest.raises(ValueError, match=r"fp16=True is not allowed with GXPO"):
        GXPOConfig(**base, fp16=True)
    with pytest.raises(ValueError, match=r"steps_per_generation=3 must be a multiple of gradient_accumulation_steps=2"):
        GXPOConfig(**base, steps_per_generation=3, gradient_accumulation_steps=2)
    with pytest.raises(TypeError, match="GXPOConfig"):
        GXPOTrainer(model="unused", args=SFPOConfig(**base))


def test_minibatch_major_order_and_logs(tiny_lm, toy_dataset, tmp_path):
    """M = 2 mini-batches (steps_per_generation = 2): optimizer steps over slices 0, 0, 0, 1, 1, 1 per RL step."""
    steps = RLSteps()
    args = gxpo_args(tmp_path, steps_per_generation=2, sfpo_max_rl_steps=2, gxpo_retention="gradient")
    trainer = run(Slices, tiny_lm, args, toy_dataset, callbacks=[steps])
    assert trainer.seen == [0, 0, 0, 1, 1, 1] * 2
    assert trainer.state.global_step == 12 and trainer.sfpo_rl_step == 2
    assert adam_steps(trainer) == {4.0}  # transactional: once per mini-batch, as GRPO
    for record in steps.records:
        assert record["gxpo/active"] == 1 and record["sfpo/backward_passes"] == 6 and record["gxpo/fallbacks"] == 0
        assert 0.5 <= record["gxpo/alpha_q_p10"] <= record["gxpo/alpha_q_mean"] <= record["gxpo/alpha_q_p90"] <= 1.75
        assert 0 < record["gxpo/extrapolated_fraction"] <= 1 and record["gxpo/displacement_norm"] > 0
        assert "gxpo/entropy" in record and "sfpo/rollouts" in record


def test_k2_is_sfpo_k2_at_the_same_alpha_with_sgd(tiny_lm, toy_dataset, tmp_path):
    """K = 2 makes q ≡ 1: with SGD (no optimizer state) and one mini-batch per pass, probe 1, probe 2,
    θ0 + α(θ2 − θ0) and the corrective step are SFPO's two fast passes, reposition and slow pass."""
    sgd = dict(optim="sgd", weight_decay=0.0, learning_rate=0.5, sfpo_max_rl_steps=2)
    gxpo = run(GXPOTrainer, tiny_lm, gxpo_args(tmp_path / "g", gxpo_k=2, gxpo_alpha=0.7, **sgd), toy_dataset)
    sfpo = run(SFPOTrainer, tiny_lm, sfpo_args(tmp_path / "s", sfpo_inner_steps=2, sfpo_alpha=0.7, **sgd),
               toy_dataset)
    a, b = weights(gxpo), weights(sfpo)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    logged = [h for h in gxpo.state.log_history if "gxpo/alpha_q_mean" in h]
    assert [h["gxpo/alpha_q_mean"] for h in logged] == pytest.approx([0.7, 0.7])


def test_switched_off_from_the_first_rl_step_is_grpo(tiny_lm, toy_dataset, tmp_path):
    grpo = run(SFPOTrainer, tiny_lm, sfpo_args(tmp_path / "grpo", sfpo_inner_steps=0, sfpo_max_rl_steps=3,
                                               steps_per_generation=2), toy_dataset)
    gxpo = run(GXPOTrainer, tiny_lm, gxpo_args(tmp_path / "gxpo", gxpo_switch="step", gxpo_stop_step=0,
                                               sfpo_max_rl_steps=3, steps_per_generation=2), toy_dataset)
    assert gxpo.state.global_step == grpo.state.global_step == 6
    a, b = weights(grpo), weights(gxpo)
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [[h["loss"] for h in t.state.log_history if "loss" in h] for t in (grpo, gxpo)]
    assert losses[0] == losses[1] and len(losses[0]) == 6
    records = [h for h in gxpo.state.log_history if "gxpo/active" in h]
    assert [h["gxpo/active"] for h in records] == [0, 0, 0] and all(h["sfpo/backward_passes"] == 2 for h in records)


def flat_reward(completions, **kwargs):
    return [0.5] * len(completions)


def test_no_reward_signal_falls_back_to_grpo_every_minibatch(tiny_lm, toy_dataset, tmp_path):
    """Equal rewards: every advantage and so every gradient is zero; each mini-batch falls back to one plain
    step from (θ0, s0), which with weight decay still moves the weights exactly as GRPO's step does."""
    common = dict(sfpo_max_rl_steps=2, steps_per_generation=2, weight_decay=0.1)
    grpo = run(SFPOTrainer, tiny_lm, sfpo_args(tmp_path / "grpo", sfpo_inner_steps=0, **common), toy_dataset,
               reward=flat_reward)
    gxpo = run(GXPOTrainer, tiny_lm, gxpo_args(tmp_path / "gxpo", **common), toy_dataset, reward=flat_reward)
    a, b = weights(grpo), weights(gxpo)
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [h for h in gxpo.state.log_history if "gxpo/fallbacks" in h]
    assert [h["gxpo/fallbacks"] for h in records] == [2, 2] and "gxpo/alpha_q_mean" not in records[0]
    assert adam_steps(gxpo) == adam_steps(grpo) == {4.0}


@pytest.mark.parametrize("save_steps", [1, 2, 4], ids=["after-probe-1", "after-probe-2", "mid-rl-step"])
def test_resume_between_probes_equals_the_uninterrupted_run(tiny_lm, toy_dataset, tmp_path, save_steps):
    """6 optimizer steps per RL step (M = 2): checkpoint-1 falls between probe 1 and probe 2 of mini-batch 1,
    checkpoint-2 between probe 2 and its corrective step, checkpoint-4 between mini-batch 2's probes."""
    def make(out):
        args = gxpo_args(out, steps_per_generation=2, sfpo_max_rl_steps=2, save_strategy="steps",
                         save_steps=save_steps, seed=1)
        return GXPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset)

    full = make(tmp_path / "full")
    full.train()
    checkpoint = tmp_path / "full" / f"checkpoint-{save_steps}"
    saved = torch.load(checkpoint / rank_file(0), weights_only=False)
    assert saved["anchor"] is not None and saved["gxpo"] is not None and saved["optimizer_state"] is not None
    resumed = make(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == full.state.global_step == 12
    a, b = weights(full), weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    logs = [[h for h in t.state.log_history if "gxpo/alpha_q_mean" in h] for t in (full, resumed)]
    assert logs[1][-1]["gxpo/alpha_q_mean"] == logs[0][-1]["gxpo/alpha_q_mean"]
    assert logs[1][-1]["gxpo/displacement_norm"] == logs[0][-1]["gxpo/displacement_norm"]


def test_lora_extrapolates_only_the_adapters(tiny_lm, toy_dataset, tmp_path):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = run(GXPOTrainer, tiny_lm, gxpo_args(tmp_path, sfpo_max_rl_steps=2), toy_dataset, peft_config=lora)
    base = AutoModelForCausalLM.from_pretrained(tiny_lm).state_dict()
    for name, value in trainer.model.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(value, base[name.replace("base_model.model.", "").replace(".base_layer", "")]), name
    trainable = stepped_tensors(trainer.optimizer)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert trainable and all("lora_" in names[id(p)] for p in trainable)
    size = sum(p.numel() * p.element_size() for p in trainable)
    hooks = trainer._in_step
    assert trainer._anchor.nbytes == hooks.extra_nbytes == size  # θ0 and one buffer: adapters only
    # s0: AdamW's two moments and its step count (a float32 scalar tensor) per adapter tensor
    assert trainer._state_copy.nbytes == 2 * size + 4 * len(trainable)
