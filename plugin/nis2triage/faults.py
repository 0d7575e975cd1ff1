"""Named crash points, for the crash harness in tests/ and nothing else.

`NIS2TRIAGE_CRASH_AT=alerts-written:3` makes the process kill itself with
SIGKILL the third time it reaches `crash_point("alerts-written")`, so the
harness can stop the agent exactly between two writes, not only at random.
Unset (always, in production) a crash point costs one comparison.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("NIS2TRIAGE_CRASH_AT", "")
_NAME, _, _NTH = _SPEC.partition(":")
_seen = 0

POINTS = ("bulk-alerts", "alerts-written", "state-saved", "post-answered")


def crash_point(name: str) -> None:
    global _seen
    if name != _NAME:
        return
    _seen += 1
    if _seen >= int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)
