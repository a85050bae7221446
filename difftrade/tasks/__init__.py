"""Task families with a tunable difficulty. ``make_task(name, **options)`` builds one."""

from difftrade.tasks.addition import Addition
from difftrade.tasks.base import VOCAB, VOCAB_SIZE, Task, split_prompt_answer
from difftrade.tasks.chain import Chain
from difftrade.tasks.parity import Parity
from difftrade.tasks.pointer import Pointer
from difftrade.tasks.registry import REGISTRY, get_task_class, make_task, register, task_options
from difftrade.tasks.sorting import Sorting

register(Addition)
register(Chain)
register(Pointer)
register(Parity)
register(Sorting)

__all__ = [
    "REGISTRY",
    "VOCAB",
    "VOCAB_SIZE",
    "Addition",
    "Task",
    "get_task_class",
    "make_task",
    "register",
    "split_prompt_answer",
    "task_options",
]
