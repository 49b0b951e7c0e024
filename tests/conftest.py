"""Shared fixtures: a config in tmp_path, its database, the ledger, and report builders."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import pytest
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mailbot import store  # noqa: E402
from mailbot.config import load_config  # noqa: E402
from mailbot.ledger import load_ledger  # noqa: E402

needs_soffice = pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) is not installed")


class Clock:
    """A settable clock for store.now_utc(): every rule that depends on the hour reads it."""

    def __init__(self, start: dt.datetime):
        self.t = start

    def __call__(self) -> dt.datetime:
        return self.t

    def set(self, t: dt.datetime) -> dt.datetime:
        self.t = t
        return t

    def later(self, hours: float) -> dt.datetime:
        """A moment ``hours`` after the clock's current time (the clock itself does not move)."""
        return self.t + dt.timedelta(hours=hours)


SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def clock():
    """Office hours today (10:00 Beijing time), whatever the wall clock says: tests pass at any hour."""
    today = dt.datetime.now(SHANGHAI).date()
    c = Clock(dt.datetime.combine(today, dt.time(10, 0), SHANGHAI).astimezone(dt.timezone.utc))
    store.set_clock(c)
    yield c
    store.set_clock(None)


@pytest.fixture(scope="session")
def ledger():
    return load_ledger()


@pytest.fixture(scope="session")
def ledger_dict(ledger):
    return ledger.to_dict()


@pytest.fixture
def cfg_path(tmp_path) -> Path:
    """The shipped config.toml with its state under tmp_path."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace('state_dir = "state"', f'state_dir = "{tmp_path / "state"}"', 1)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def cfg(cfg_path):
    return load_config(cfg_path)


@pytest.fixture
def db(cfg):
    database = store.open_db(cfg.db_path)
    yield database
    database.close()


@pytest.fixture(scope="session")
def roster():
    return load_config(ROOT / "config.toml").roster


@pytest.fixture
def make_report(tmp_path, ledger_dict):
    """Build a report .docx in the real layout: make_report(progress={1: "…"}, unit="民政局", **variant)."""
    from docbuilder import build_report

    counter = [0]

    def make(progress=None, *, unit="民政局", name=None, **kw) -> Path:
        counter[0] += 1
        path = tmp_path / (name or f"report-{counter[0]}.docx")
        return build_report(path, ledger_dict["sections"], ledger_dict["tasks"], unit=unit, progress=progress or {}, **kw)

    return make
