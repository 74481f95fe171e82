"""The core's wording for the command line, which imports services only (docs/decisions/0013)."""
from __future__ import annotations

from app.core.wording import plural

__all__ = ["plural"]
