"""Each package's ``__all__`` names exactly its public members, alphabetised."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ["llm_otel", "llm_otel.instrumentation", "llm_otel.testing", "exporter", "admin_flask"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_the_public_members(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        member
        for member, value in vars(package).items()
        if not member.startswith("_") and not isinstance(value, types.ModuleType) and member != "annotations"
    }
    assert set(package.__all__) == public
    assert package.__all__ == sorted(package.__all__)
