"""The console the command line writes tables and lines to, for people.

What it prints comes from events, rule files, Elasticsearch's answers and analysts'
notes: text to show as it is. Rich would otherwise read `[user.name]` in an
Elasticsearch refusal as a style tag and drop it, and `:warning:` as an emoji code.
"""

from __future__ import annotations

from rich.console import Console


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # Rich's own ends the process with status 1, the status of a failed command (an
        # unreachable node): raised instead, the command line ends it quietly with 141,
        # as it does a cut-off `--json` (`cli.main`).
        self.quiet = True
        raise BrokenPipeError("the reader of the console's output has gone")


def text_console(*, width: int | None = None, stderr: bool = False) -> Console:
    """A rich console that neither reads markup nor replaces emoji codes in what it prints."""
    return _Console(width=width, stderr=stderr, markup=False, emoji=False)
