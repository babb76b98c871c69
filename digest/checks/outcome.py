"""One check's outcome, as ``digest check`` prints it and the scheduler logs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Check", "Status", "failed"]

# "skip": the check could not run here (a tool not installed); it neither passes nor fails.
Status = Literal["ok", "warn", "FAIL", "skip"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Check:
    """One check's outcome: what was checked, how it stands, and what to do."""

    name: str
    status: Status
    detail: str

    def line(self) -> str:
        """``"FAIL  settings.from_address: …"``, as ``digest check`` prints it."""
        return f"{self.status:<5} {self.name}: {self.detail}"


def failed(checks: Sequence[Check]) -> bool:
    """True when any check failed: the send should not go."""
    return any(check.status == "FAIL" for check in checks)
