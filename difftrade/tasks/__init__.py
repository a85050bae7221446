"""Task families with a tunable difficulty. ``make_task(name, **options)`` builds one."""

from difftrade.tasks.addition import Addition
from difftrade.tasks.base import VOCAB, VOCAB_SIZE, Task, split_prompt_answer
from difftrade.tasks.registry import REGISTRY, get_task_class, make_task, register, task_options

register(Addition)

__all__ = [
    "REGISTRY", "VOCAB", "VOCAB_SIZE", "Task", "Addition", "get_task_class", "make_task",
    "register", "split_prompt_answer", "task_options",
]
