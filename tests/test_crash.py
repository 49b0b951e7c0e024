"""Crash safety under fault injection, small: 60 mails, 5 SIGKILLs of the real daemon (bench/crash_test.py).

One run (module scope, ~35 s) shared by one test per invariant, so a failure names the invariant.
The full-size run is `.venv/bin/python bench/crash_test.py` (600 mails, 25 kills).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("dovecot") is None and not os.path.exists("/usr/sbin/dovecot"), reason="dovecot is not installed"
)

MAILS, KILLS, SEED = 60, 5, 20231205


def _crash_module():
    spec = importlib.util.spec_from_file_location("crash_test", ROOT / "bench" / "crash_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("crash_test", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    module = _crash_module()
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # the sink complains about every killed session
    result = module.run(MAILS, KILLS, SEED, workdir=tmp_path_factory.mktemp("crash"), timeout=240)
    module.report(result)  # shown with -s or on failure
    return result


def test_the_run_completed(crash):
    assert not crash.timed_out, "the daemon did not finish the mailbox and the outbox in time"
    assert len(crash.kills) >= KILLS
    assert crash.unexpected_exits == [], crash.unexpected_exits
    assert crash.final_rc == 0, "SIGTERM did not stop the daemon cleanly"


def test_no_orphaned_processes(crash):
    assert crash.orphans == [] and crash.final_leftovers == []


def test_every_message_has_exactly_one_final_status(crash):
    assert crash.status_problems == []
    assert crash.one_status == MAILS


def test_progress_is_the_latest_text(crash):
    assert crash.progress_cells > 0
    assert crash.progress_mismatches == []
    assert crash.report_problems == []
    assert crash.export_problems == []


def test_no_reply_row_lost_and_all_sent(crash):
    assert crash.replies_expected > 0
    assert crash.lost_ack_rows == []
    assert crash.extra_reply_rows == []
    assert crash.unsent_rows == []
    assert crash.histogram.get(0, 0) == 0, crash.histogram
    assert set(crash.no_reply_histogram) == {0}, crash.no_reply_histogram
    assert crash.smtp_problems == []


def test_duplicate_deliveries_only_from_kills_and_bounded(crash):
    """A reply is delivered again only when a kill fell between the sink's 250 and the row being marked sent."""
    assert crash.unexplained == [], (
        f"{len(crash.unexplained)} duplicate deliveries with no kill to explain them "
        f"({crash.finish_locked} outbox jobs died with 'database is locked' in outbox._finish after sending)"
    )
    assert len(crash.duplicates) <= len(crash.kills)
