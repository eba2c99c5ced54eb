"""Evaluation as the paper reports it: pass@1 averaged over n samples (avg@n), per benchmark and overall.

A benchmark is an `EvalSet` (prompts, gold answers, a scorer with TRL's reward signature). A sample counts
as correct when its score is ≥ 0.95 (the reference code's rule, so a 0.1 format score never counts).
Generation uses vLLM when it is installed and a model path is given, else batched Hugging Face `generate`
(also what evaluation inside training uses, on the live weights). Sampling runs under its own RNG seed, so
evaluating never changes the random stream that training's rollouts draw from.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sfpo.algorithm.atomic import atomic_write_text

CORRECT_AT = 0.95


@dataclass
class EvalSet:
    name: str
    prompts: list  # raw strings or conversational lists [{"role": "user", "content": ...}]
    answers: list[str]
    scorer: Callable[..., list[float]]
    ids: list = field(default_factory=list)
    extract: Callable[[str], str | None] | None = None  # what samples.jsonl shows as "extracted" (default: math)
    test_shapes: dict[str, int] | None = None  # code benchmarks: problems per way of judging (sfpo.code.reward.shape_of_tests)

    def __post_init__(self):
        if len(self.prompts) != len(self.answers):
            raise ValueError(f"eval set {self.name!r}: {len(self.prompts)} prompts but {len(self.answers)} answers")
        if not self.ids:
            self.ids = list(range(len(self.prompts)))


@dataclass
class EvalResult:
    scores: dict[str, float]  # benchmark -> avg@n accuracy
    average: float  # unweighted mean over benchmarks, as the paper reports
    n: int
    records: list[dict]  # one per sample: benchmark, id, sample, completion, extracted, score, correct
    settings: dict

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        out = {f"{prefix}{name}": value for name, value in self.scores.items()}
        out[f"{prefix}accuracy"] = self.average
        return out


def render_prompts(prompts: Sequence, tokenizer) -> list[str]:
    """Conversational prompts get the chat template with the generation prompt; strings stay as they are."""
    out = []
    for p in prompts:
        if isinstance(p, str):
            out.append(p)
        else:
            out.append(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True))
    return out


@torch.no_grad()
def generate_hf(
    model,
    tokenizer,
    prompts: list[str],
    n: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int = 32,
    seed: int = 0,
) -> list[list[str]]:
    """n completions per prompt with `model.generate`, left-padded batches, its own RNG stream."""
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    per_batch = max(batch_size // n, 1)
    outputs: list[list[str]] = []
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), per_batch):
                chunk = prompts[start : start + per_batch]
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                sampling = temperature > 0
                gen = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=sampling,
                    temperature=temperature if sampling else None,
                    top_p=top_p if sampling else None,
                    top_k=0 if sampling else None,
                    num_return_sequences=n,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                outputs.extend(texts[i * n : (i + 1) * n] for i in range(len(chunk)))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return outputs


def generate_vllm(
    model_path: str, prompts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int = 0
) -> list[list[str]]:  # pragma: no cover - needs a GPU and vLLM
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_path, seed=seed)
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed)
    return [[o.text for o in out.outputs] for out in llm.generate(prompts, params)]


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _extract(text: str) -> str | None:
    from sfpo.common.text import extract_answer

    return extract_answer(text)


def _clip(gold, limit: int = 4000):
    """Code benchmarks' gold is their test suite, sometimes megabytes: samples.jsonl keeps its head."""
    return gold[:limit] + "…" if isinstance(gold, str) and len(gold) > limit else gold


def evaluate(
    model,
    tokenizer,
    sets: Sequence[EvalSet],
    n: int = 4,
    temperature: float = 1.0,
    top_p: float = 0.7,
    max_new_tokens: int = 2560,
    batch_size: int = 32,
    seed: int = 0,
    backend: str = "auto",
    model_path: str | None = None,
) -> EvalResult:
    """avg@n per benchmark and their unweighted mean. `backend`: "auto", "hf" or "vllm"."""
    if n < 1:
        raise ValueError(f"n={n!r} is not allowed: n must be an int ≥ 1")
    if backend not in ("auto", "hf", "vllm"):
        raise ValueError(f"backend={backend!r} is not allowed: use 'auto', 'hf' or 'vllm'")
    use_vllm = backend == "vllm" or (backend == "auto" and model_path is not None and vllm_available())
    scores, records, shapes = {}, [], {}
    for es in sets:
        if es.test_shapes is not None:
            shapes[es.name] = dict(es.test_shapes)
        prompts = render_prompts(es.prompts, tokenizer)
        if use_vllm:
            completions = generate_vllm(model_path, prompts, n, temperature, top_p, max_new_tokens, seed)
        else:
            completions = generate_hf(model, tokenizer, prompts, n, temperature, top_p, max_new_tokens, batch_size, seed)
        flat = [c for group in completions for c in group]
        answers = [a for a in es.answers for _ in range(n)]
        values = es.scorer(flat, answer=answers)
        correct = [v is not None and v >= CORRECT_AT for v in values]
        scores[es.name] = sum(correct) / len(correct) if correct else 0.0
        for i, (text, value, ok) in enumerate(zip(flat, values, correct)):
            records.append(
                {
                    "benchmark": es.name,
                    "id": es.ids[i // n],
                    "sample": i % n,
                    "completion": text,
                    "extracted": (es.extract or _extract)(text),
                    "gold": _clip(answers[i]),
                    "score": value,
                    "correct": ok,
                }
            )
    average = statistics.fmean(scores.values()) if scores else 0.0
    settings = dict(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                    backend="vllm" if use_vllm else "hf")
    if shapes:
        settings["code_tests"] = shapes
    return EvalResult(scores=scores, average=average, n=n, records=records, settings=settings)


def markdown_table(result: EvalResult) -> str:
    names = list(result.scores)
    head = "| " + " | ".join(["benchmark", *names, "average"]) + " |"
    rule = "|" + "---|" * (len(names) + 2)
    row = "| " + " | ".join([f"avg@{result.n} (%)", *(f"{100 * result.scores[k]:.2f}" for k in names),
                             f"{100 * result.average:.2f}"]) + " |"
    return "\n".join([head, rule, row])


def code_test_lines(result: EvalResult) -> list[str]:
    """One line per code benchmark: how many problems' tests call the program and how many compare its stdout."""
    lines = []
    for name, shapes in result.settings.get("code_tests", {}).items():
        lines.append(
            f"{name}: {sum(shapes.values())} problems, the tests of {shapes.get('calls', 0)} calling the program and "
            f"of {shapes.get('stdin_stdout', 0)} reading its stdout; each judged in a sandbox of the tests' own, "
            "apart from the program's (docs/sandbox.md)"
        )
    return lines


def write_eval(result: EvalResult, out_dir: str | os.PathLike) -> list[Path]:
    """eval.json (scores, settings), eval.md (the table) and samples.jsonl (every sample), written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"scores": result.scores, "average": result.average, "n": result.n, "settings": result.settings}
    files = {
        "eval.json": json.dumps(summary, indent=2),
        "eval.md": markdown_table(result) + "\n",
        "samples.jsonl": "".join(json.dumps(r) + "\n" for r in result.records),
    }
    written = []
    for name, text in files.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    return written
