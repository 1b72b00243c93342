"""Each package's ``__all__`` names exactly its public members, alphabetised (those that load on
first use, PEP 562, included)."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ["llm_otel", "llm_otel.instrumentation", "llm_otel.testing", "exporter", "admin_flask"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_the_public_members(name: str) -> None:
    package = importlib.import_module(name)
    for member in package.__all__:  # loads the names that load on first use
        getattr(package, member)
    public = {
        member
        for member, value in vars(package).items()
        if not member.startswith("_") and not isinstance(value, types.ModuleType) and member != "annotations"
    }
    assert set(package.__all__) == public
    assert package.__all__ == sorted(package.__all__)
    assert public <= set(dir(package))
