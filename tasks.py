"""Invoke's entry point: the namespaces live in the `tasks/` folder beside this file.

Invoke loads `tasks.py` before a `tasks/` package, under the module name `tasks`. Giving this module
a `__path__` makes `tasks/` its submodules, so `inv` (from any sub-folder) and `import tasks` in
tests build the same tree from `tasks.collection.namespace`.
"""

import atexit
import gc
import sys
from pathlib import Path

# Invoke turns bytecode caches off (`sys.dont_write_bytecode`, unless `inv --write-pyc`) before
# it loads this file, so every `inv` compiled the task modules and every library module without a
# cache from source: 60 ms of a start. They are written as Python writes them elsewhere, unless
# the interpreter was asked for none (`python -B`, PYTHONDONTWRITEBYTECODE).
sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

__path__ = [str(Path(__file__).resolve().with_name("tasks"))]

from tasks import command_line  # noqa: E402 (after the bytecode switch above)
from tasks.catalog_task import flush_at_exit, quiet_broken_pipe  # noqa: E402
from tasks.collection import namespace  # noqa: E402

ns = namespace()
# Invoke's own output (`inv --list | head`) ends quietly too when its reader goes away, written
# through or buffered; tasks' output is handled by CatalogTask. Only `inv` loads this file
# (`import tasks` is the package).
sys.excepthook = quiet_broken_pipe
atexit.register(flush_at_exit)
# At exit, Python's last collections walk every object Invoke, the tasks and the library made
# (about 28,000 after `session.list`): 20 to 30 ms of every command, after its output, for memory
# the process is about to give back whole. Frozen, they are left out; atexit handlers still run,
# standard streams are still flushed, and what is made after this point is still collected.
atexit.register(gc.freeze)
# A command line Invoke cannot parse is one `error:` line with exit code 2, as the tasks' own.
command_line.install()
