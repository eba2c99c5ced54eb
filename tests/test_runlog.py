"""RunRecorder's wall_s: training time only; evaluation and checkpoint saving are left out."""

from __future__ import annotations

from types import SimpleNamespace

from sfpo.app import runlog
from sfpo.app.runlog import RunRecorder, read_metrics


def test_wall_s_leaves_out_evaluation_and_checkpoint_saving(tmp_path, monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: clock["now"])

    def at(t):
        clock["now"] = 100.0 + t

    def evaluator(model):  # 4 s of evaluation
        clock["now"] += 4.0
        return {"eval/accuracy": 0.5}

    recorder = RunRecorder(tmp_path, evaluator=evaluator, eval_every=2, eval_at_start=False)
    state, args, control = SimpleNamespace(is_world_process_zero=True, global_step=0), None, None

    def rl_step_end(step):
        recorder.on_rl_step_end(args, state, control, metrics={"sfpo/rl_step": step, "sfpo/rollouts": 8 * step})

    recorder.on_train_begin(args, state, control)
    at(10), recorder.on_step_end(args, state, control)
    at(12), rl_step_end(1)  # 12 s of training, no evaluation
    at(15), recorder.on_save(args, state, control)  # a 3 s checkpoint after the RL step's line
    at(20), recorder.on_step_end(args, state, control)
    at(22), rl_step_end(2)  # 12 + 7 s of training, then 4 s of evaluation (22 -> 26)
    at(27), recorder.on_save(args, state, control)  # 1 s checkpoint
    at(30), recorder.on_step_end(args, state, control)
    at(31), recorder.on_save(args, state, control)  # a save mid-RL step (save_steps, a signal): 1 s
    at(35), recorder.on_step_end(args, state, control)
    at(36), rl_step_end(3)
    walls = [r["wall_s"] for r in read_metrics(tmp_path / runlog.METRICS_FILE)]
    # step 3: 36 s since the start, less 3 + 4 + 1 + 1 s of saving and evaluation
    assert walls == [12.0, 19.0, 27.0]
