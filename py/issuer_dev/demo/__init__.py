"""``issuer demo``: the end-to-end story on a local database, told through the real API.

* :mod:`.environment`: Postgres (project-local or given), the schema, the fake
  Clerk and the issuer's HTTP server on loopback; all stopped at the end.
* :mod:`.cast`: Acme Inc and its people, created as a backend would.
* :mod:`.story`: the steps, each checking what it expects.
* :mod:`.render`: how it looks (rich).
"""

from __future__ import annotations

import time
from pathlib import Path

from issuer_dev.demo.environment import demo_environment
from issuer_dev.demo.render import Narrator
from issuer_dev.demo.story import DemoReport, Story

__all__ = ["DemoReport", "run_demo"]


def run_demo(
    local_dir: Path,
    *,
    server_url: str | None = None,
    narrator: Narrator | None = None,
) -> DemoReport:
    """Tell the story; returns what happened. Everything started is stopped again."""
    say = narrator or Narrator()
    started = time.monotonic()
    say.title(
        "Org-scoped tokens with pooled, seat-gated credits: the demo",
        "A real Postgres, the real HTTP API on loopback, a fake Clerk. Nothing is mocked in between.",
    )
    say.chapter(0, "Setting the stage")
    with demo_environment(local_dir, server_url=server_url, announce=say.progress) as env:
        report = Story(env, say).run()
    elapsed = time.monotonic() - started
    if report.ok:
        say.result(True, f"Demo complete in {elapsed:.1f} s: every step behaved as described.")
        if server_url:
            say.note("Nothing is left running; the demo database was dropped.")
        else:
            say.note(
                "Nothing is left running. The database `demo` is kept under .local/ "
                "(`issuer db up` to look at it, `make clean` to remove it)."
            )
    else:
        say.result(False, f"Demo finished with {len(report.failures)} unexpected result(s):")
        for failure in report.failures:
            say.note(failure)
    return report
