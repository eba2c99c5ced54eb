"""Public names of the offline tasks (kept stable across the package's layout); the code lives in
:mod:`sfpo.toy.task`, :mod:`sfpo.toy.tasks` and :mod:`sfpo.toy.pyfunc`."""

from sfpo.toy.pyfunc import PyFuncTask
from sfpo.toy.task import EVAL_SEED, Problem, Task
from sfpo.toy.tasks import TASKS, AdditionTask, ArithmeticTask, CountdownTask, generation_kwargs_for, get_task

__all__ = [
    "EVAL_SEED",
    "TASKS",
    "AdditionTask",
    "ArithmeticTask",
    "CountdownTask",
    "Problem",
    "PyFuncTask",
    "Task",
    "generation_kwargs_for",
    "get_task",
]
