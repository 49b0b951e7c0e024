"""The parse worker processes' side of `mailbox.Preparers`: as few imports as possible.

A worker runs `intake.prepare` (archive, decode, parse; no database, no mail
templates), so it loads neither sqlite-utils, Jinja2 nor imap-tools: each worker
costs its share of memory on a small server.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal

_CFG = None


def init(cfg, log_level: int) -> None:
    """Ctrl-C in a terminal reaches the whole process group; it is for the parent, which
    finishes the message in hand. SIGTERM keeps its default: the pool itself ends workers
    with it when it breaks (ignoring it deadlocks a broken pool), and the service's
    KillMode=mixed sends the daemon's SIGTERM to the daemon alone."""
    global _CFG
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    _CFG = cfg


def prepare(raw: bytes, kwargs: dict):
    from . import intake

    return intake.prepare(_CFG, raw, **kwargs)


def _die_with_parent() -> None:
    """A SIGKILLed (or OOM-killed) daemon must not leave its workers behind. Linux delivers SIGKILL to this process when
    the thread that started it exits (the poll thread, which outlives its pool)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: an idle worker still ends on its pipe's EOF
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before prctl took effect
        os._exit(1)
