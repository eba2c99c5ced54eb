"""The run folder's `metrics.jsonl`: one line per RL step, written at SFPOTrainer's `on_rl_step_end` event.

Each line holds `rl_step`, `rollouts` (completions generated so far), `wall_s` (training wall-clock so far,
evaluation and checkpoint saving excluded so both arms of a comparison pay only for training), `optimizer_step`, the
trainer's metrics averaged over the RL step (TRL's, `loss`, `grad_norm`, `learning_rate`; with the short
aliases `reward`, `entropy`, `completion_length`), the `sfpo/*` and `timing/*` metrics, and `eval/*` on the steps where
evaluation ran. The event does not depend on `logging_steps`, so there is a line per RL step however often
the trainer writes log entries. A line
`rl_step: 0` holds the evaluation before training, when there is one.

Every line is written with one `write` and flushed, so an interrupted run leaves at most one partial
last line, which `sfpo.app.report` skips.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from sfpo.algorithm.atomic import atomic_write_text

METRICS_FILE = "metrics.jsonl"
ALIASES = {"reward": "reward", "entropy": "entropy", "completions/mean_length": "completion_length"}


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The complete lines of a metrics file. A torn last line (a run killed mid-write: no newline, or bytes
    that are not JSON) is dropped; a bad line before the end is an error naming it."""
    if not os.path.exists(path):
        return []
    # A kill can cut a multi-byte character: decode leniently and let the JSON check catch it.
    raw = Path(path).read_bytes().decode("utf-8", errors="replace").split("\n")
    complete, tail = raw[:-1], raw[-1]  # `tail` is "" when the file ends with a newline
    lines = []
    for number, line in enumerate(complete, start=1):
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(complete) and not tail:
                break  # torn last line
            raise ValueError(f"{path}:{number}: not a JSON line ({err.msg}); only the last line may be torn") from None
    return lines


class RunRecorder(TrainerCallback):
    """Writes `metrics.jsonl` into `run_dir`; optionally evaluates every `eval_every` RL steps.

    `evaluator(model) -> dict` returns metrics named `eval/...` (the mean one `eval/accuracy`). With
    `save_best`, the weights with the best `eval/accuracy` so far are kept in `run_dir/best` (the paper's
    best-average checkpoint). `on_step(record)` is called after each line, e.g. to drive a progress bar.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        evaluator: Callable | None = None,
        eval_every: int = 0,
        save_best: bool = False,
        eval_at_start: bool = True,
        on_step: Callable[[dict], None] | None = None,
    ):
        if evaluator is not None and (not isinstance(eval_every, int) or eval_every < 1):
            raise ValueError(f"eval_every={eval_every!r} is not allowed: it must be an int ≥ 1 when evaluating")
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.evaluator = evaluator
        self.eval_every = eval_every
        self.save_best = save_best
        self.eval_at_start = eval_at_start
        self.on_step = on_step
        self.trainer = None
        self.best: float | None = None

    def attach(self, trainer) -> RunRecorder:
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    # ---------------------------------------------------------------- events

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._main = state.is_world_process_zero
        done = getattr(self.trainer, "sfpo_rl_step", 0)
        kept = [r for r in read_metrics(self.path) if r["rl_step"] <= done] if done else []
        self._wall_offset = kept[-1]["wall_s"] if kept else 0.0
        evals = [r["eval/accuracy"] for r in kept if "eval/accuracy" in r]
        self.best = max(evals) if evals else None
        if self._main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._excluded_s = 0.0  # evaluation and checkpoint saving so far, left out of wall_s
        self._step_end: tuple[float, float] | None = None  # (clock, _excluded_s) when the newest step's work ended
        self._t0 = time.perf_counter()
        if self.evaluator is not None and self.eval_at_start and not done:
            record = {"rl_step": 0, "rollouts": 0, "wall_s": 0.0, "optimizer_step": state.global_step}
            record.update(self._evaluate(model))
            self._write(record)

    def on_step_end(self, args, state, control, **kwargs):
        self._step_end = (time.perf_counter(), self._excluded_s)

    def on_save(self, args, state, control, **kwargs):
        # A checkpoint is written after the optimizer step (and after the RL step's line and evaluation): its
        # time is not training.
        if self._step_end is not None:
            clock, evaluated = self._step_end
            self._excluded_s += max(time.perf_counter() - clock - (self._excluded_s - evaluated), 0.0)
            self._step_end = None

    def on_rl_step_end(self, args, state, control, metrics=None, model=None, **kwargs):
        # SFPOTrainer's own event: once per RL step, whatever logging_steps says, with the step's means.
        metrics = metrics or {}
        rl_step = int(metrics["sfpo/rl_step"])
        record = {
            "rl_step": rl_step,
            "rollouts": int(metrics["sfpo/rollouts"]),
            "wall_s": round(self._wall_offset + time.perf_counter() - self._t0 - self._excluded_s, 3),
            "optimizer_step": state.global_step,
        }
        record.update({k: v for k, v in metrics.items() if not k.startswith("sfpo/")})
        for source, alias in ALIASES.items():
            if source in record:
                record[alias] = record[source]
        record.update({k: v for k, v in metrics.items() if k.startswith("sfpo/")})
        if self.evaluator is not None and rl_step % self.eval_every == 0:
            record.update(self._evaluate(model))
        self._write(record)
        self._step_end = (time.perf_counter(), self._excluded_s)  # a checkpoint may follow

    # ---------------------------------------------------------------- helpers

    def _evaluate(self, model) -> dict:
        start = time.perf_counter()
        model = self.trainer.accelerator.unwrap_model(model) if self.trainer is not None else model
        metrics = self.evaluator(model)
        accuracy = metrics.get("eval/accuracy")
        if self.save_best and accuracy is not None and (self.best is None or accuracy > self.best):
            self._save_best(model)
        if accuracy is not None:
            self.best = accuracy if self.best is None else max(self.best, accuracy)
        self._excluded_s += time.perf_counter() - start
        return metrics

    def _save_best(self, model) -> None:
        if not self._main:
            return
        target = self.run_dir / "best"
        tmp = Path(tempfile.mkdtemp(dir=self.run_dir, prefix=".best-"))
        model.save_pretrained(tmp)
        tokenizer = getattr(self.trainer, "processing_class", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        old = self.run_dir / ".best-old"
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    def _write(self, record: dict) -> None:
        if self._main:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        if self.on_step is not None:
            self.on_step(record)


class CheckpointEvery(TrainerCallback):
    """A checkpoint at the end of every `every`-th RL step, right after that step's line in `metrics.jsonl`, so
    that a run killed without warning (SIGKILL, a machine taken back) loses at most `every` RL steps. The trainer
    keeps only the newest (`save_total_limit=1`); a resumed run reproduces the uninterrupted one."""

    def __init__(self, every: int):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint_every={every!r} is not allowed: it must be an int ≥ 1")
        self.every = every

    def on_rl_step_end(self, args, state, control, metrics=None, **kwargs):
        if int(metrics["sfpo/rl_step"]) % self.every == 0:
            control.should_save = True  # the save follows in this optimizer step's save phase
