"""Shift the wall clock of every Python process of a test run (the test process and the mailbot
processes it starts) by MAILBOT_TEST_CLOCK_OFFSET seconds, with time-machine. Monotonic time, and
the servers the fixtures start (Dovecot, LibreOffice), keep the real clock.

scripts/test-at-hours puts this directory on PYTHONPATH to run the suite at 23:30 and at 09:00
Beijing time: tests must pass at any hour. Nothing in mailbot itself knows about it.
"""

import os

_offset = os.environ.get("MAILBOT_TEST_CLOCK_OFFSET")
if _offset:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
