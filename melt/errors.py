"""Typed errors. The library raises these; only cli.py turns them into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class MeltError(Exception):
    """Something went wrong that is not the user's input (exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one key of one input file."""

    file: str
    key: str  # dotted key path, e.g. models[0].params.threads
    expected: str
    found: str
    line: int | None = None  # 1-based, where the YAML parser gave one

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} expected {self.expected}, found {self.found}"


class InputError(MeltError):
    """Bad recipe, profile or option (exit 2). Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem, hint: str = ""):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [str(p) for p in self.problems]
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class SourceError(InputError):
    """A model source that cannot be resolved (missing file, package, bad checksum)."""


class CaseFailed(MeltError):
    """A case that ran and failed on the device; the run goes on."""
