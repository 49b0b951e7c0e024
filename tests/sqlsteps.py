"""Counting the SQLite work a call does, free of timing noise (tests/test_province.py, bench/province.py)."""

from __future__ import annotations


def vm_steps(db, fn) -> int:
    """SQLite virtual-machine instructions executed by fn()."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    db.conn.set_progress_handler(tick, 1)
    try:
        fn()
    finally:
        db.conn.set_progress_handler(None, 1)
    return steps
