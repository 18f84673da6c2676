"""The public face: every public name has a docstring and a place in the API reference."""

from __future__ import annotations

import inspect
from pathlib import Path

import hyperdnn as hd

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_public_name_has_its_own_docstring() -> None:
    missing = []
    for name in hd.__all__:
        obj = getattr(hd, name)
        doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
        # a dataclass without a docstring gets its signature as __doc__
        if not doc or not doc.strip() or doc.startswith(f"{name}("):
            missing.append(name)
    assert not missing, f"public names without a docstring: {missing}"


def test_every_public_name_is_in_the_api_reference() -> None:
    reference = "\n".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    modules = {n for n in hd.__all__ if inspect.ismodule(getattr(hd, n))}
    absent = [n for n in hd.__all__ if n not in modules and f"::: hyperdnn.{n}\n" not in reference + "\n"]
    assert not absent, f"public names missing from docs/api/*.md: {absent}"


def test_all_is_sorted_and_complete() -> None:
    assert list(hd.__all__) == sorted(hd.__all__, key=str.lower)
    assert all(hasattr(hd, n) for n in hd.__all__)
