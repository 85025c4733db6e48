"""The scripted model server the tests drive Codex with: `orchestrator.scripted_model`.

It lives in the library (the demo runs it too); the tests keep importing it from here.
"""

from orchestrator.scripted_model import *  # noqa: F403
from orchestrator.scripted_model import __all__ as __all__
