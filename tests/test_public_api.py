"""The public surface is explicit: ``__all__`` is sorted and matches what is public."""

from __future__ import annotations

import cascade


def test_all_is_sorted_and_complete() -> None:
    public = {n for n in dir(cascade) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(cascade, n)).__name__ == "module"}
    assert sorted(cascade.__all__) == cascade.__all__
    assert set(cascade.__all__) - {"__version__"} == public - modules


def test_every_public_name_is_documented() -> None:
    for name in cascade.__all__:
        obj = getattr(cascade, name)
        if callable(obj):
            assert obj.__doc__, name
