"""The ``sfpo`` command: ``sfpo demo | train | eval | compare``.

Each command is a thin shell over a function of the library; bad input exits with code 2 and a message
that names the option, the value given and what is allowed.
"""

from __future__ import annotations

import math

import typer

from sfpo.app.demo import DemoSettings

app = typer.Typer(
    name="sfpo",
    help="Slow-Fast Policy Optimization (SFPO) for RL fine-tuning of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich markup would eat every "[...]" in the help texts (defaults included) and print a
    # "<bool>" placeholder after flags, which take no value.
    rich_markup_mode=None,
)


def fail(message: str) -> None:
    """Print an error for the user and exit with code 2 (bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**32:
        fail(f"--seed {seed} is not allowed: it must be an int in [0, 4294967295]")


# --- commands are registered below, one section each ---------------------------------------------


# --- demo: GRPO and SFPO side by side on the embedded policy -------------------------------------------


@app.command()
def demo(
    task: str = typer.Option(None, show_default=False,
                             help="Offline task: arithmetic, countdown or pyfunc (code) on the tiny policy, addition on "
                                  "smollm2.  [default: arithmetic; smollm2: addition]"),
    steps: int = typer.Option(None, show_default=False,
                              help="RL steps (generation batches) per arm.  [default: 30; smollm2: 12]"),
    seed: int = typer.Option(0, help="Seed for rollouts and data order (the warm start is shared)."),
    out: str = typer.Option(None, show_default=False,
                            help="Demo folder; must be new or empty.  [default: runs/demo-<timestamp>]"),
    arms: str = typer.Option("grpo,sfpo", help="Comma-separated arms: grpo, sfpo, gxpo (GXPO, K=5, α=0.5), grpo-k4 (equal-compute control), sfpo-restore, sfpo-kl, sfpo-patient (opt-in variants)."),
    policy: str = typer.Option("tiny", help="tiny (shipped with the package) or smollm2 (needs `make smollm2`)."),
    eval_every: int = typer.Option(None, show_default=False,
                                   help="Evaluate held-out accuracy every N RL steps.  [default: 3; smollm2: 4]"),
    learning_rate: float = typer.Option(None, show_default=False,
                                        help="Learning rate, the same for every arm.  [default: 1e-4; smollm2: 1e-5]"),
    entropy_coef: float = typer.Option(DemoSettings.entropy_coef, help="Entropy bonus for every arm; 0 turns it off."),
    prompts_per_step: int = typer.Option(None, show_default=False,
                                         help="Prompts per RL step.  [default: 16; smollm2: 4]"),
    optimizer_steps_per_pass: int = typer.Option(DemoSettings.optimizer_steps_per_pass,
                                                 help="Mini-batches (optimizer steps) per pass."),
    switch: str = typer.Option(DemoSettings.switch, help="When SFPO turns itself off: entropy_zscore, step or none."),
    stop_step: int = typer.Option(None, show_default=False,
                                  help="With --switch step: the first RL step run as plain GRPO.  [default: none]"),
    skip_zero_std_batches: bool = typer.Option(
        False, help="No update on a generation batch whose groups all have equal rewards (every arm)."
    ),
) -> None:
    """Train a GRPO baseline and SFPO from the same warm start, offline, and compare them."""
    from sfpo.app.demo import SMOLLM2, prepare_out, run_demo

    preset = SMOLLM2 if policy == "smollm2" else {}
    settings = DemoSettings(**{**preset, "policy": policy, "seed": seed,
                               "arms": tuple(a.strip() for a in arms.split(",") if a.strip())})
    settings.task = task or preset.get("task", "arithmetic")
    settings.steps = steps if steps is not None else settings.steps
    settings.eval_every = eval_every if eval_every is not None else settings.eval_every
    if learning_rate is not None:
        if not (learning_rate > 0 and math.isfinite(learning_rate)):
            fail(f"--learning-rate {learning_rate!r} is not allowed: it must be a finite number > 0")
        settings.learning_rate = learning_rate
    settings.entropy_coef = entropy_coef
    for name, value in (("prompts_per_step", prompts_per_step), ("optimizer_steps_per_pass", optimizer_steps_per_pass),
                        ("switch", switch), ("stop_step", stop_step)):
        if value is not None:
            setattr(settings, name, value)
    settings.skip_zero_std_batches = skip_zero_std_batches
    _check_seed(seed)
    try:
        settings.validate()
        folder = prepare_out(out)
    except ValueError as err:
        fail(str(err))
    from sfpo.algorithm.interrupt import TrainingInterrupted
    from sfpo.app.quiet import quiet_third_party

    quiet_third_party()
    try:
        run_demo(settings, folder)
    except TrainingInterrupted as stop:
        typer.echo(f"interrupted: {stop}; the metrics so far are in {folder}", err=True)
        raise typer.Exit(code=stop.exit_code) from None


# --- train: one run from a YAML recipe ------------------------------------------------------------------


@app.command()
def train(
    config: str = typer.Option(..., "--config", "-c", help="Recipe YAML (see configs/)."),
    overrides: list[str] = typer.Option(None, "--set", show_default=False, metavar="KEY=VALUE",
                                        help="Override a recipe key, repeatable: --set trainer.learning_rate=1e-6.  "
                                             "[default: none]"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and print the resolved recipe; load nothing."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in output_dir."),
) -> None:
    """Train with SFPO (GRPO with sfpo_inner_steps: 0; GXPO with algorithm: gxpo) from a recipe."""
    from sfpo.app.recipe import RecipeError, cpu_only_overrides, load_recipe, read_yaml, resolved_yaml

    overrides = list(overrides or [])
    try:
        if dry_run:  # on a machine without a GPU, check a GPU recipe with its mixed precision turned off
            extra = cpu_only_overrides(read_yaml(config))
            if extra:
                typer.echo(f"note: no GPU here; validating with {' '.join(extra)} (the recipe is unchanged)", err=True)
            overrides = extra + overrides
        recipe = load_recipe(config, overrides)
    except RecipeError as err:
        fail(str(err))
    if dry_run:
        typer.echo(resolved_yaml(recipe))
        return
    from sfpo.algorithm.guards import RewardFunctionError, reward_failure
    from sfpo.algorithm.interrupt import TrainingInterrupted
    from sfpo.algorithm.reposition import NonFiniteWeightsError
    from sfpo.algorithm.trainer import NonFiniteTrainingError
    from sfpo.app.pipeline import ModelUnavailableError
    from sfpo.app.pipeline import train as run_train
    from sfpo.app.quiet import quiet_third_party
    from sfpo.common.datasets import DatasetUnavailableError

    quiet_third_party()

    try:  # train() checks the run folder before loading anything
        try:
            run_dir = run_train(recipe, resume=resume)
        except Exception as err:
            where = reward_failure(err)  # a reward function raised (whatever its type): the guard's note names it
            if where is not None:
                typer.echo(f"error: {type(err).__name__}: {err}\n  {where}", err=True)
                raise typer.Exit(code=1) from None
            raise
    except (RecipeError, ModelUnavailableError, DatasetUnavailableError, FileNotFoundError) as err:
        fail(str(err))
    except TrainingInterrupted as stop:
        typer.echo(f"interrupted: {stop}; continue with the same command plus --resume", err=True)
        raise typer.Exit(code=stop.exit_code) from None
    except (RewardFunctionError, NonFiniteTrainingError, NonFiniteWeightsError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"run folder: {run_dir}")


# --- eval: avg@n on benchmarks, as the paper reports ------------------------------------------------------


def _data_files(items: list[str]) -> dict:
    files = {}
    for item in items or []:
        if "=" not in item:
            fail(f"--data-files {item!r} is not NAME=PATH (e.g. math500=./math500.jsonl)")
        name, path = item.split("=", 1)
        files[name] = path
    return files


@app.command(name="eval")
def eval_(
    model: str = typer.Option(..., "--model", help="Hub id, local folder, or 'tiny'."),
    benchmarks: str = typer.Option("math500,aime24,aime25,amc23,minerva,olympiadbench",
                                   help="Comma-separated dataset recipes or offline tasks."),
    n: int = typer.Option(4, help="Samples per problem (avg@n)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature; 0 is greedy."),
    top_p: float = typer.Option(0.7, "--top-p", help="Nucleus sampling: keep the smallest token set of this mass."),
    max_new_tokens: int = typer.Option(2560, "--max-new-tokens", help="Longest completion, in tokens."),
    data_files: list[str] = typer.Option(None, "--data-files", show_default=False, metavar="NAME=PATH",
                                         help="Local copy of a benchmark instead of the hub, NAME=PATH, repeatable "
                                              "(e.g. math500=./math500.jsonl).  [default: none: the hub]"),
    limit: int = typer.Option(None, show_default=False,
                              help="Use only the first N problems of each benchmark.  [default: all]"),
    chat: str = typer.Option("auto", help="Chat template: auto, true or false."),
    batch_size: int = typer.Option(32, "--batch-size", help="Prompts per generation batch."),
    seed: int = typer.Option(0, help="Sampling seed."),
    backend: str = typer.Option("auto", help="auto (vLLM when installed with a GPU), hf or vllm."),
    task: str = typer.Option(None, show_default=False,
                             help="With --model tiny: the task the tiny policy is built for.  [default: arithmetic]"),
    out: str = typer.Option(None, show_default=False,
                            help="Folder for eval.json, eval.md and samples.jsonl.  [default: none: print only]"),
) -> None:
    """Evaluate a model: pass@1 averaged over n samples per benchmark, and their unweighted mean."""
    from sfpo.app.catalog import DATASETS
    from sfpo.app.pipeline import ModelUnavailableError, run_eval
    from sfpo.common.datasets import DatasetUnavailableError
    from sfpo.toy.tasks import TASKS

    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    for name in names:
        if name not in DATASETS and name not in TASKS:
            fail(f"--benchmarks: unknown benchmark {name!r}; allowed: {', '.join(sorted(DATASETS))}, "
                 f"{', '.join(sorted(TASKS))}")
    if not names:
        fail("--benchmarks is empty")
    for opt, value in (("--n", n), ("--max-new-tokens", max_new_tokens), ("--batch-size", batch_size)):
        if value < 1:
            fail(f"{opt} {value!r} is not allowed: it must be an int ≥ 1")
    if chat not in ("auto", "true", "false"):
        fail(f"--chat {chat!r} is not allowed: use auto, true or false")
    if not (temperature >= 0 and math.isfinite(temperature)):
        fail(f"--temperature {temperature!r} is not allowed: it must be a finite number ≥ 0 (0 = greedy)")
    if not 0 < top_p <= 1:
        fail(f"--top-p {top_p!r} is not allowed: it must be in (0, 1]")
    if limit is not None and limit < 1:
        fail(f"--limit {limit!r} is not allowed: it must be an int ≥ 1")
    if backend not in ("auto", "hf", "vllm"):
        fail(f"--backend {backend!r} is not allowed: use auto, hf or vllm")
    if task is not None and task not in TASKS:
        fail(f"--task {task!r} is not a task; allowed: {', '.join(sorted(TASKS))}")
    _check_seed(seed)
    files = _data_files(data_files)
    for name in files:
        if name not in names:
            fail(f"--data-files {name}=...: {name!r} is not among --benchmarks ({', '.join(names)})")
    chat_value = {"auto": "auto", "true": True, "false": False}[chat]
    from sfpo.app.quiet import quiet_third_party

    quiet_third_party()
    try:
        result, table, files = run_eval(model, names, out, n=n, temperature=temperature, top_p=top_p,
                                        max_new_tokens=max_new_tokens, data_files=files,
                                        limit=limit, chat=chat_value, batch_size=batch_size, seed=seed,
                                        backend=backend, task=task)
    except (ModelUnavailableError, DatasetUnavailableError, FileNotFoundError, ValueError) as err:
        fail(str(err))
    from sfpo.common.evaluate import code_test_lines

    typer.echo(table)
    for line in code_test_lines(result):
        typer.echo(line)
    for f in files:
        typer.echo(f"wrote {f}")


# --- compare: rollouts and wall-clock to reach the baseline's best ---------------------------------------

_MULTI_VALUE_OPTIONS = ("--baseline", "-b", "--candidate", "-c")


def _spread_multi_values(args: list[str]) -> list[str]:
    """Rewrite ``--baseline A B`` as ``--baseline A --baseline B`` (click options take one value each)."""
    out: list[str] = []
    flag, taken = None, 0
    for arg in args:
        if flag and not arg.startswith("-"):
            out += [flag, arg]
            taken += 1
            continue
        if flag and not taken:
            out.append(flag)  # no value: let click report the missing argument
        flag, taken = (arg, 0) if arg in _MULTI_VALUE_OPTIONS else (None, 0)
        if not flag:
            out.append(arg)
    if flag and not taken:
        out.append(flag)
    return out


class _MultiValueCommand(typer.core.TyperCommand):
    """``compare`` with option values spread as above before click parses them."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, _spread_multi_values(list(args)))


def _compare_inputs(runs: list[str], baselines: list[str], candidates: list[str]) -> tuple[list, list]:
    """Baseline and candidate run folders from the positional form, a demo folder, or the seed options."""
    from pathlib import Path

    from sfpo.app.report import demo_arms, expand_paths, is_run_folder

    usage = (
        "give BASELINE CANDIDATE, one demo folder holding grpo/ and sfpo/, or --baseline A.. --candidate B.."
    )
    if baselines or candidates:
        if runs:
            fail(f"got both positional paths {runs} and --baseline/--candidate; use one form: {usage}")
        if not baselines or not candidates:
            fail(f"--baseline and --candidate go together: {usage}")
        base, cand = expand_paths(baselines), expand_paths(candidates)
    elif len(runs) == 2:
        base, cand = [Path(runs[0])], [Path(runs[1])]
    elif len(runs) == 1:
        if is_run_folder(Path(runs[0])):
            fail(f"{runs[0]} is a single run folder: {usage}")
        base, cand = demo_arms(runs[0])
    else:
        fail(f"got {len(runs)} positional path(s): {usage}")
    if len(base) != len(cand):
        fail(
            f"{len(base)} baseline run(s) but {len(cand)} candidate run(s): runs are paired in the given "
            "order, so the counts must be equal"
        )
    return base, cand


def _print_comparison(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from sfpo.app.report import PAIR_COLUMNS, pair_rows, stability_rows, summary_rows

    console = Console()
    summary = Table("quantity", "value", title="rollouts to reach the baseline's best")
    for row in summary_rows(result):
        summary.add_row(*row)
    console.print(summary)
    if result["n_pairs"] > 1:
        pairs = Table(*PAIR_COLUMNS, title="pairs")
        for row in pair_rows(result):
            pairs.add_row(*row)
        console.print(pairs)
    stability = Table("quantity", "baseline", "candidate", title="stability and wall-clock split")
    for row in stability_rows(result):
        stability.add_row(*row)
    console.print(stability)
    for note in result["notes"]:
        console.print(f"note: {note}", highlight=False)


# Declared once at module level: typer reads parameter metadata from defaults.
_COMPARE_PATHS = typer.Argument(
    None,
    metavar="BASELINE CANDIDATE | DEMO",
    show_default=False,
    help="Baseline and candidate run folders, or one demo folder holding grpo/ (baseline) and sfpo/.",
)
_COMPARE_BASELINE = typer.Option(
    None,
    "--baseline",
    "-b",
    show_default=False,
    metavar="RUN",
    help="Baseline run folders, one per seed (globs allowed): --baseline A B C.  [default: none: the positional form]",
)
_COMPARE_CANDIDATE = typer.Option(
    None,
    "--candidate",
    "-c",
    show_default=False,
    metavar="RUN",
    help="Candidate run folders, paired with --baseline in the given order.  [default: none]",
)
_COMPARE_METRIC = typer.Option(
    "eval/accuracy", help="Metric to compare; in TRL logs eval_x (eval/x also finds eval_x), or any key."
)
_COMPARE_TOLERANCE = typer.Option(0.0, help="A candidate value >= baseline best - TOLERANCE matches (>= 0).")
_COMPARE_LOWER = typer.Option(False, "--lower-is-better", help="For loss-like metrics: best is the lowest.")
_COMPARE_PER_STEP = typer.Option(
    None,
    show_default=False,
    help="TRL runs only: completions per optimizer step N (rollouts = step x N).  [default: derived as "
    "generation_batch_size x gradient_accumulation_steps / (steps_per_generation x num_iterations) "
    "= per_device_train_batch_size x world_size x gradient_accumulation_steps / num_iterations, read "
    "from training_args.bin, config.json/yaml and trainer_state.json's train_batch_size (missing factors "
    "taken as 1, with a warning)]",
)
_COMPARE_JSON = typer.Option(False, "--json", help="Print one JSON object on stdout; warnings go to stderr.")
_COMPARE_OUT = typer.Option(
    None, "--out", show_default=False, help="Write report.md and PNG plots to DIR.  [default: none: print only]",
    metavar="DIR",
)


@app.command("compare", cls=_MultiValueCommand)
def compare(
    runs: list[str] = _COMPARE_PATHS,
    baseline: list[str] = _COMPARE_BASELINE,
    candidate: list[str] = _COMPARE_CANDIDATE,
    metric: str = _COMPARE_METRIC,
    tolerance: float = _COMPARE_TOLERANCE,
    lower_is_better: bool = _COMPARE_LOWER,
    completions_per_step: float = _COMPARE_PER_STEP,
    json_out: bool = _COMPARE_JSON,
    out: str = _COMPARE_OUT,
) -> None:
    """Rollouts and wall-clock the candidate needs to reach the baseline's best metric value.

    rollout_ratio = baseline rollouts to best / candidate rollouts to match; above 1: candidate faster.

    wall_ratio likewise. With several seeds (--baseline A B --candidate C D), pairs go in the given order.
    """
    import json

    from sfpo.app.report import ReportError, compare_runs, load_run, write_report

    if not tolerance >= 0:  # also rejects NaN
        fail(f"--tolerance {tolerance}: must be >= 0")
    if completions_per_step is not None and not completions_per_step > 0:
        fail(f"--completions-per-step {completions_per_step}: must be > 0")
    try:
        base_paths, cand_paths = _compare_inputs(runs or [], baseline or [], candidate or [])
        loaded = [load_run(p, completions_per_step) for p in (*base_paths, *cand_paths)]
        for run in loaded:
            for warning in run.warnings:
                typer.echo(f"warning: {warning}", err=True)
        bases, cands = loaded[: len(base_paths)], loaded[len(base_paths) :]
        result = compare_runs(bases, cands, metric, tolerance, higher_is_better=not lower_is_better)
        files = write_report(result, bases, cands, out, metric) if out else []
    except ReportError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or out}: {exc.strerror or exc}")
    if json_out:
        result["files"] = [str(f) for f in files]
        typer.echo(json.dumps(result, indent=2))
        return
    _print_comparison(result)
    for file in files:
        typer.echo(f"wrote {file}")


if __name__ == "__main__":  # pragma: no cover
    app()
