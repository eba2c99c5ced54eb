"""The code domain: dataset recipes (`data`), the execution reward (`reward`), how tests are judged (`cases`), and
the sandbox the programs run in (`sandbox`, `syscall_filter`, and the runners `_run_calls.py` / `_run_asserts.py`,
which execute inside it). Threat model: docs/sandbox.md.
"""

from sfpo.code.reward import code_accuracy, code_accuracy_partial, make_code_accuracy

__all__ = ["code_accuracy", "code_accuracy_partial", "make_code_accuracy"]
