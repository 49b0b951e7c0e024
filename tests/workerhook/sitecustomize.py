"""Loaded at start-up by the parse worker processes of tests/test_workers.py (via PYTHONPATH).

A worker that meets a message containing the marker dies on the spot, as if a C
library had crashed on it: the only way to prove the daemon survives that, since
monkeypatches in the test process do not reach spawned workers.
"""

import os

MARKER = os.environ.get("MAILBOT_TEST_KILL_WORKER_ON", "").encode()

if MARKER:
    from mailbot import intake

    _real_prepare = intake.prepare

    def prepare(cfg, raw, **kwargs):
        if MARKER in raw:
            os._exit(70)
        return _real_prepare(cfg, raw, **kwargs)

    intake.prepare = prepare
