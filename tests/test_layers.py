"""The package's layers: imports point one way (application → toy → domains → common → algorithm), no circles.

Read from the source with `ast` (every `import` and `from ... import`, inside functions too), so a lazy import
that climbs a layer or closes a circle fails here as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# The layer of each top-level part of the package; a module may import its own part and lower layers only.
# math and code are peers: neither may import the other.
LAYERS = {
    "sfpo.algorithm": 0,
    "sfpo.common": 1,
    "sfpo.math": 2,
    "sfpo.code": 2,
    "sfpo.toy": 3,
    "sfpo.app": 4,
    # public names at stable paths (re-exports only), above everything they re-export
    "sfpo.rewards": 5,
    "sfpo.tasks": 5,
    "sfpo.tiny": 5,
    "sfpo.cli": 5,
}
ROOT = "sfpo"  # the package's __init__: the lazy SFPOConfig / SFPOTrainer, from the algorithm layer only


def modules(src: Path) -> dict[str, Path]:
    found = {}
    for path in sorted((src / "sfpo").rglob("*.py")):
        name = ".".join(path.relative_to(src).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The sfpo modules `name` imports (the deepest known module of each dotted target)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            dotted = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            dotted = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in dotted:
            while target and target not in known:
                target = target.rpartition(".")[0]
            # a module's own ancestor packages are loaded before it anyway: not an edge (as Python sees it)
            if target.startswith(ROOT) and target != name and not name.startswith(target + "."):
                targets.add(target)
    return targets


def part(module: str) -> str:
    return next((p for p in LAYERS if module == p or module.startswith(p + ".")), module)


def violations(src: Path) -> tuple[list[str], list[list[str]]]:
    """(imports that break the layering, import circles) in the package under `src`."""
    mods = modules(src)
    graph = {m: imports(m, p, set(mods)) for m, p in mods.items()}
    bad = []
    for module, targets in graph.items():
        if module == ROOT:
            bad += [f"{module} -> {t}" for t in targets if part(t) != "sfpo.algorithm"]
            continue
        if part(module) not in LAYERS:
            bad.append(f"{module} belongs to no layer (add it to a package or to LAYERS)")
            continue
        for t in targets:
            same = part(t) == part(module)
            if not same and (part(t) not in LAYERS or LAYERS[part(t)] >= LAYERS[part(module)]):
                bad.append(f"{module} -> {t}")
    circles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                circles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return bad, circles


def test_imports_point_down_and_there_are_no_circles():
    bad, circles = violations(SRC)
    assert not bad, "imports against the layering:\n" + "\n".join(bad)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_every_module_is_in_a_layer_and_the_algorithm_imports_nothing_else():
    mods = modules(SRC)
    assert {part(m) for m in mods} - {ROOT} == set(LAYERS)
    for m, p in mods.items():
        if part(m) == "sfpo.algorithm":
            assert all(part(t) == "sfpo.algorithm" for t in imports(m, p, set(mods)) if t != ROOT), m


def write(src: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"sfpo/algorithm/trainer.py": "from sfpo.app.demo import x\n", "sfpo/app/demo.py": ""},
         "sfpo.algorithm.trainer -> sfpo.app.demo"),
        ({"sfpo/math/reward.py": "def f():\n    from sfpo.code import reward\n", "sfpo/code/reward.py": ""},
         "sfpo.math.reward -> sfpo.code.reward"),  # peers, and a lazy import counts
        ({"sfpo/common/text.py": "from ..toy import tasks\n", "sfpo/toy/tasks.py": ""},
         "sfpo.common.text -> sfpo.toy.tasks"),  # a relative import counts
    ],
)
def test_the_check_finds_an_upward_import(tmp_path, files, expected):
    bad, _ = violations(write(tmp_path, {"sfpo/__init__.py": "", **files}))
    assert expected in bad


def test_the_check_finds_a_circle(tmp_path):
    src = write(tmp_path, {"sfpo/__init__.py": "", "sfpo/app/a.py": "import sfpo.app.b\n",
                           "sfpo/app/b.py": "from sfpo.app import c\n", "sfpo/app/c.py": "from sfpo.app.a import x\n"})
    _, circles = violations(src)
    assert circles == [["sfpo.app.a", "sfpo.app.b", "sfpo.app.c", "sfpo.app.a"]]
