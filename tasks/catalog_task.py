"""The Task class every task of this project uses: Invoke's, plus what the catalog needs.

Each task declares next to its code how `just`, the agent command catalog and the Codex skills
present it (and where it can run at all), so the generator reads one definition instead of a side
table that could drift. Library errors become
one line on stderr and the library's exit code (2 for bad input), never a traceback.

Every argument is an option (`--manifest M`), as `just` and the catalog present it: Invoke would
otherwise take arguments without a default positionally, and `inv session.start --help` would
read `--help` as the manifest. Such arguments stay required; a missing one is a one-line error.

Invoke empties `Task.help` while it builds its parser (`get_arguments` pops each entry), which
happens before any task runs; `argument_help` keeps a copy so that `inv commands.generate` still
sees every argument's help.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from invoke.exceptions import Exit
from invoke.tasks import Task

if TYPE_CHECKING:
    from orchestrator.catalog import RunsIn


class CatalogTask(Task[Callable[..., Any]]):
    """An Invoke task with catalog metadata.

    - `category`: groups the catalog entry.
    - `safe_for_agents`: whether Codex may run it without asking a person.
    - `runs_in`: "host" when it needs the Docker engine or the orchestrator's session registry
      (only the orchestrator's machine has them), "anywhere" when it also works inside a session
      container (the repository checkout, uv and git, but no Docker).
    - `legacy_names`: old recipe names that stay as just aliases.
    - `example`: one command line shown in the task's skill (`just RECIPE ...` or `inv PATH ...`).
    - `confirm`: what to confirm with a person before running it; required when not safe.
    """

    def __init__(
        self,
        body: Callable[..., Any],
        *,
        category: str,
        safe_for_agents: bool,
        runs_in: RunsIn,
        legacy_names: Sequence[str] = (),
        example: str | None = None,
        confirm: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("auto_shortflags", False)
        kwargs.setdefault("positional", [])
        super().__init__(body, **kwargs)
        self.argument_help: dict[str, str] = dict(self.help)
        self.category = category
        self.safe_for_agents = safe_for_agents
        self.runs_in: RunsIn = runs_in
        self.legacy_names = tuple(legacy_names)
        self.example = example
        self.confirm = confirm

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from orchestrator.errors import OrchestratorError

        # The command line uses no pydantic plugin; looking for them reads every installed
        # distribution's metadata on the first model, about 40 ms per command. A value the user
        # set is kept.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

        self._check_required(*args, **kwargs)
        try:
            return super().__call__(*args, **kwargs)
        except OrchestratorError as exc:
            lines = exc.problems or [str(exc)]
            raise Exit("\n".join(f"error: {line}" for line in lines), code=exc.exit_code) from None

    def _check_required(self, *args: Any, **kwargs: Any) -> None:
        """An argument without a default that was not given: Invoke passes None, or [] for a
        repeatable one."""
        given = inspect.signature(self.body).bind_partial(*args, **kwargs).arguments
        for name, parameter in self.argspec(self.body).parameters.items():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if parameter.default is inspect.Parameter.empty and given.get(name) in (None, []):
                flag = name.strip("_").replace("_", "-")
                raise Exit(f"error: --{flag} is required", code=2)
