"""The scripted model `inv demo --codex` runs on this machine: a real Codex turn, no account.

Every turn goes the same way, whatever it is asked: the model has Codex run one command in the
session's workspace, then answers with what the command printed, saying that the answer is
scripted. Codex, its tools, the session's container and the transcripts are all real; only the
model is not. `python -m orchestrator.demo_model --ready-file F` serves it until it is stopped
(SIGTERM), after writing its address to F.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

from orchestrator.scripted_model import FakeModel, Recorded, Reply, message, shell

# The command every scripted turn runs in the workspace: where it is, what is there, which commit.
COMMAND = "pwd && ls | head -n 8 && git log --oneline -1"
SCRIPTED = (
    "(This answer is scripted by filare-agents' demo model, not written by a language model: no "
    "OpenAI account was used. Codex, its tools and the container are real.)"
)
_MAX_SHOWN = 800


def answer(request: Recorded) -> Reply:
    """Run `COMMAND` first; once its output is back, answer with it."""
    items = request.input
    if items and str(items[-1].get("type", "")).endswith("_output"):
        output = items[-1].get("output")
        text = output if isinstance(output, str) else json.dumps(output)
        # Codex reports the command as `… Process exited with code N … Output:\n<output>`.
        ended = next((line for line in text.splitlines() if line.startswith("Process exited")), "")
        printed = text.split("Output:\n", 1)[-1].strip()[-_MAX_SHOWN:]
        how = f" {ended[len('Process ') :]}" if ended else ""
        return message(
            f"I ran `{COMMAND}` in my workspace; it{how} and printed:\n\n{printed}\n\n{SCRIPTED}"
        )
    return shell(COMMAND)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    model = FakeModel(answer=answer, port=options.port).start()
    ready = {"pid": os.getpid(), "port": model.port}
    temporary = options.ready_file.with_name(f".{options.ready_file.name}.{os.getpid()}")
    temporary.write_text(json.dumps(ready) + "\n", encoding="utf-8")
    temporary.replace(options.ready_file)
    threading.Event().wait()


if __name__ == "__main__":
    main()
