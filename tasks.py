"""Invoke's entry point: the namespaces live in the `tasks/` folder beside this file.

Invoke loads `tasks.py` before a `tasks/` package, under the module name `tasks`. Giving this module
a `__path__` makes `tasks/` its submodules, so `inv` (from any sub-folder) and `import tasks` in
tests build the same tree from `tasks.collection.namespace`.
"""

from pathlib import Path

__path__ = [str(Path(__file__).resolve().with_name("tasks"))]

from tasks.collection import namespace

ns = namespace()
