"""One item of `fh check`: OK, WARN or FAIL, with its fix (a leaf module: host/check.py and privilege.py both make them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    item: str
    level: str  # OK, WARN, FAIL
    message: str
    fix: str = ""

    def to_dict(self) -> dict:
        return {"item": self.item, "level": self.level, "message": self.message, "fix": self.fix}
