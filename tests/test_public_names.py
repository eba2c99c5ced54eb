"""Every `sfpo.…` name the README and the docs mention resolves, and the public API keeps its paths (issue 21)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
# a dotted name that starts with sfpo (not a file name such as qwen3-4b-base-sfpo.yaml, not a metric sfpo/x)
DOTTED = re.compile(r"(?<![\w/.-])sfpo(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"^\s*from (sfpo(?:\.\w+)*) import ([\w, ]+?)\s*(?:#.*)?$", re.M)


def resolve(dotted: str):
    """The object `dotted` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def mentioned() -> list[tuple[str, str]]:
    names = []
    for doc in DOCS:
        text = doc.read_text()
        where = str(doc.relative_to(ROOT))
        names += [(where, m.rstrip(".")) for m in DOTTED.findall(text)]
        for module, imported in FROM_IMPORT.findall(text):
            names += [(where, f"{module}.{n.strip()}") for n in imported.split(",") if n.strip()]
    return sorted(set(names))


@pytest.mark.parametrize("doc, name", mentioned())
def test_every_name_the_docs_use_resolves(doc, name):
    resolve(name)


def test_the_public_api_keeps_its_paths():
    from sfpo import SFPOConfig, SFPOTrainer
    from sfpo.algorithm.config import SFPOConfig as config
    from sfpo.algorithm.trainer import SFPOTrainer as trainer

    assert SFPOConfig is config and SFPOTrainer is trainer
    for name in ("sfpo.rewards.math_accuracy", "sfpo.rewards.math_accuracy_format", "sfpo.rewards.boxed_format",
                 "sfpo.rewards.code_accuracy", "sfpo.rewards.code_accuracy_partial", "sfpo.rewards.get_reward",
                 "sfpo.rewards.REWARDS", "sfpo.tasks.get_task", "sfpo.tasks.TASKS", "sfpo.tiny.build_tiny_policy",
                 "sfpo.tiny.load_tokenizer", "sfpo.code.code_accuracy", "sfpo.cli.app"):
        assert resolve(name) is not None, name
    assert resolve("sfpo.rewards.code_accuracy") is resolve("sfpo.code.reward.code_accuracy")
    assert resolve("sfpo.tasks.get_task")("arithmetic").name == "arithmetic"
    assert set(resolve("sfpo.rewards.REWARDS")) == {"math_accuracy", "math_accuracy_format", "boxed_format",
                                                      "code_accuracy", "code_accuracy_partial"}


def test_the_docs_name_enough_to_be_checked():
    names = {n for _, n in mentioned()}
    assert {"sfpo.SFPOConfig", "sfpo.SFPOTrainer", "sfpo.rewards.code_accuracy", "sfpo.tasks.get_task",
            "sfpo.tiny.build_tiny_policy"} <= names
