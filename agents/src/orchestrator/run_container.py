"""The origin's `orchestrator.run_container` (its Python `docker run` runner), replaced.

`scripts/run_codex_container.sh` is the one place `docker run` is spelled; `inv session.start`
calls it. Importing the origin's names fails with an ImportError naming that; running this module
(`python -m orchestrator.run_container`, as the origin's `codex-container-run` recipe did) says
the same and exits with code 2.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

from orchestrator.replaced import replaced, replacement_message

_RUNNER = (
    "`inv session.start --manifest PATH` starts sessions (`--dry-run` prints the `docker run`); "
    "by hand, scripts/run_codex_container.sh --workspace DIR --ssh-key KEY --env-file FILE opens "
    "a shell in the image, as the origin's runner did"
)
REPLACED = {"run_container": _RUNNER, "app": _RUNNER}

# Hidden from type checkers, which would otherwise accept any name of this module.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> NoReturn:
        raise replaced(__name__, name, REPLACED)


if __name__ == "__main__":
    old = "python -m orchestrator.run_container"
    print(f"error: {replacement_message(old, _RUNNER)}", file=sys.stderr)
    sys.exit(2)
