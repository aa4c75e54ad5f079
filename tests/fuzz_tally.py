"""Figures from the fuzz suites themselves, for the README's reliability section.

The fuzz tests call ``tally`` as they check each case; at the end of the session ``conftest.py`` writes the
counts as JSON to ``$CIRCUITS_RELIABILITY_REPORT`` when that variable is set (nothing is written otherwise)::

    CIRCUITS_RELIABILITY_REPORT=reliability.json python3 -m pytest tests/test_fuzz_*.py -q

Every suite is seeded, so the same code gives the same figures. A broken contract fails its test, and is
counted here too (``tracebacks``, ``internal_errors``, ``payloads_run``), so a report from a failing run says
what was seen.
"""

from __future__ import annotations

import json
from collections import Counter


class Tally:
    def __init__(self):
        self.cases = Counter()  # suite -> cases checked
        self.tracebacks = 0
        self.internal_errors = Counter()  # exception type -> count
        self.errors_refused = 0
        self.hostile_tried = 0
        self.hostile_refused = 0
        self.payloads_run = 0

    def case(self, suite: str) -> None:
        self.cases[suite] += 1

    def refused(self) -> None:
        """A case ended in one of circuits' own errors (the library), or a one-line Error: (the CLI)."""
        self.errors_refused += 1

    def traceback(self) -> None:
        self.tracebacks += 1

    def seen(self, output: str, exit_code: int) -> None:
        """What one CLI invocation printed: a traceback, an internal error, or (failing) its one Error: line."""
        self.tracebacks += "Traceback" in output
        if "Error: internal error" in output:
            self.internal()
        elif exit_code != 0 and "Error: " in output:
            self.refused()

    def internal(self, kind: str = "internal error") -> None:
        self.internal_errors[kind] += 1

    def hostile(self, refused: bool, ran: bool) -> None:
        """A file crafted to run code (a pickle payload) or to exhaust memory, and what became of it."""
        self.hostile_tried += 1
        self.hostile_refused += bool(refused)
        self.payloads_run += bool(ran)

    def report(self) -> dict:
        return {
            "schema_version": 1,
            "fuzz_cases": {**dict(sorted(self.cases.items())), "total": sum(self.cases.values())},
            "failing_cases_with_one_error_line": self.errors_refused,
            "tracebacks": self.tracebacks,
            "internal_errors": sum(self.internal_errors.values()),
            "internal_error_types": dict(sorted(self.internal_errors.items())),
            "hostile_files": {"tried": self.hostile_tried, "refused": self.hostile_refused,
                              "payloads_run": self.payloads_run},
        }

    def write(self, path: str) -> None:
        with open(path, "w") as out:
            json.dump(self.report(), out, indent=2, sort_keys=False)
            out.write("\n")


tally = Tally()
