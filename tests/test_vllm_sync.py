"""vLLM receives the post-slow-pass weights: one weight sync per RL step, never the fast θK or the repositioned θ̃.

vllm is not installed here, so only TRL's HTTP client to a vLLM server is replaced. Everything from the trainer
down is TRL's real code: the sync condition in `GRPOTrainer._generate_single_turn`
(`state.global_step != _last_loaded_step`), `VLLMGeneration.sync_weights` / `_iter_named_params` (server mode), and
`VLLMGeneration.generate`. The fake server keeps the weights it is sent and samples from them, so TRL's check of
the sampling log-probs against the trainer's old log-probs (taken at θ0) is a second witness of what was synced.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback
from trl.generation.vllm_generation import VLLMGeneration

from _fake_vllm import FakeVLLMServer, named
from _tiny_config import tiny_cpu
from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.reposition import InStepReposition

K, RL_STEPS = 2, 3
OPT_STEPS_PER_PASS = 2  # steps_per_generation 2 / gradient_accumulation_steps 1
OPT_STEPS_PER_RL_STEP = (K + 1) * OPT_STEPS_PER_PASS


class AfterEachOptimizerStep(TrainerCallback):
    def __init__(self):
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights[state.global_step] = named(model)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_vllm_gets_weights_after_the_slow_pass(tiny_lm, toy_dataset, tmp_path, monkeypatch):
    server = FakeVLLMServer(tiny_lm)

    def connect(self):  # replaces only the connection to the server; the mode stays "server"
        self.vllm_client = server

    monkeypatch.setattr(VLLMGeneration, "_init_vllm", connect)

    anchors, fast, repositioned = [], [], []
    pre_step, post_step = InStepReposition._pre_step, InStepReposition._post_step
    holder = {}

    def record_pre_step(self, opt, a, kw):  # one process: one step() call per optimizer step
        armed = self._snapshot
        pre_step(self, opt, a, kw)
        if armed:
            anchors.append(named(holder["trainer"].model))

    def record_post_step(self, opt, a, kw):
        armed = self._alpha is not None
        if armed:
            fast.append(named(holder["trainer"].model))
        post_step(self, opt, a, kw)
        if armed:
            repositioned.append(named(holder["trainer"].model))

    monkeypatch.setattr(InStepReposition, "_pre_step", record_pre_step)
    monkeypatch.setattr(InStepReposition, "_post_step", record_post_step)

    args = SFPOConfig(**tiny_cpu(
        output_dir=str(tmp_path / "run"),
        seed=0,
        shuffle_dataset=False,
        logging_steps=1,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        steps_per_generation=2,
        num_generations=4,
        max_completion_length=6,
        learning_rate=5e-3,
        lr_scheduler_type="constant",
        sfpo_inner_steps=K,
        sfpo_alpha=0.5,
        sfpo_max_rl_steps=RL_STEPS,
        use_vllm=True,
        vllm_mode="server",
    ))
    steps = AfterEachOptimizerStep()
    trainer = SFPOTrainer(
        model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset, callbacks=[steps]
    )
    holder["trainer"] = server.trainer = trainer
    steps.weights[0] = named(trainer.model)  # before any optimizer step
    trainer.train()

    assert trainer.sfpo_rl_step == RL_STEPS and trainer.sfpo_active
    assert trainer.state.global_step == RL_STEPS * OPT_STEPS_PER_RL_STEP
    # one sync per RL step, at its start: TRL's condition fires once per generation, not once per optimizer step
    assert [step for step, _ in server.syncs] == [s * OPT_STEPS_PER_RL_STEP for s in range(RL_STEPS)]
    assert len(anchors) == len(fast) == len(repositioned) == RL_STEPS
    for s, (_, synced) in enumerate(server.syncs):
        # the weights right after the previous RL step's slow correction (its last optimizer step) ...
        assert same(synced, steps.weights[s * OPT_STEPS_PER_RL_STEP]), f"RL step {s}"
        if s:  # ... which is not where the slow pass started
            assert not same(synced, steps.weights[s * OPT_STEPS_PER_RL_STEP - 1])
        # ... and the θ0 this RL step anchors and takes its old log-probs at
        assert same(synced, anchors[s])
        for theta in fast + repositioned:
            assert not same(synced, theta), "vLLM must never receive the fast θK or the repositioned θ̃"

    # the fake server sampled from what it was sent, and TRL found its log-probs equal to the old log-probs at θ0
    diffs = [
        h["sampling/sampling_logp_difference/max"]
        for h in trainer.state.log_history
        if "sampling/sampling_logp_difference/max" in h
    ]
    assert len(diffs) == RL_STEPS and max(diffs) < 1e-4, diffs
