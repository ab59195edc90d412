"""Skip-or-fail helpers for tests that need optional packages."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require_module(name: str) -> ModuleType:
    """Import `name`, or skip the test; under CI=true a missing module fails it instead."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the module {name!r} is not importable: {exc}")
        pytest.skip(f"module {name!r} is not installed")
