"""The code domain: dataset recipes (`data`), the execution reward (`reward`), the two sandboxes of a verdict
(`judge`: the tests in one, the program in another; `_run_tests.py` and `_run_program.py` run inside them and talk
through `_wire.py`), reading functional specs (`cases`), and the sandbox itself (`sandbox`, `syscall_filter`).
Threat model: docs/sandbox.md.
"""

from sfpo.code.reward import code_accuracy, code_accuracy_partial, make_code_accuracy

__all__ = ["code_accuracy", "code_accuracy_partial", "make_code_accuracy"]
