"""Task families with a tunable difficulty. ``make_task(name, **options)`` builds one.

New families register with ``@register``; installed packages add theirs through the entry-point
group ``difftrade.tasks`` (see ``registry`` and docs/tasks.md, "Your own task family").
"""

from difftrade.tasks.addition import Addition
from difftrade.tasks.base import VOCAB, VOCAB_SIZE, Task, split_prompt_answer
from difftrade.tasks.chain import Chain
from difftrade.tasks.parity import Parity
from difftrade.tasks.pointer import Pointer
from difftrade.tasks.registry import (
    ENTRY_POINT_GROUP,
    REGISTRY,
    get_task_class,
    import_modules,
    load_entry_points,
    make_task,
    register,
    task_names,
    task_options,
)
from difftrade.tasks.sorting import Sorting

register(Addition)
register(Chain)
register(Pointer)
register(Parity)
register(Sorting)

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "VOCAB",
    "VOCAB_SIZE",
    "Addition",
    "Task",
    "get_task_class",
    "import_modules",
    "load_entry_points",
    "make_task",
    "register",
    "split_prompt_answer",
    "task_names",
    "task_options",
]
