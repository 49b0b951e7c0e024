"""Fixes found by the SIGKILL fault-injection run (bench/crash_test.py): each proved here directly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import sqlite_utils.db as sdb

import mailbuilder as mb
from mailbot import intake, outbox, store
from mailbot.intake import ingest


def test_outbox_finish_survives_a_commit_by_another_connection(tmp_path, monkeypatch):
    """The poll commits between the outbox's read and write: with a deferred BEGIN that
    failed at once ("database is locked") and the row, already sent, was sent again."""
    path = tmp_path / "m.db"
    db1, db2 = store.open_db(path), store.open_db(path)
    rid = store.insert(db1, "outbox", {"dedupe_key": "ack:1", "kind": "ack", "status": "pending", "created_at": "x"})
    db1.conn.commit()
    real_get = sdb.Table.get

    def get(self, pk):  # a read before the write (as Table.update does): the poll commits meanwhile
        row = real_get(self, pk)
        with store.write_transaction(db2):
            db2.execute("INSERT INTO kv VALUES ('x', 'y', 'z')")
        return row

    monkeypatch.setattr(sdb.Table, "get", get)
    outbox._finish(db1, rid, status="sent", sent_at="2023-08-10T00:00:00+00:00")
    assert db2.execute("SELECT status, sent_at FROM outbox WHERE id = ?", [rid]).fetchone() == ("sent", "2023-08-10T00:00:00+00:00")


def test_no_deferred_transactions_left_in_the_code():
    """Every transaction in mailbot writes; each must take the write lock first (BEGIN IMMEDIATE)."""
    from pathlib import Path

    src = Path(intake.__file__).parent
    offenders = [f"{p.name}:{i}" for p in src.glob("*.py") for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if ".atomic()" in line and not line.lstrip().startswith("#")
                 and not (p.name == "store.py" and "nested" in line)]
    assert offenders == [], "use store.write_transaction(db) instead of db.atomic(): " + ", ".join(offenders)


def test_an_older_report_processed_later_does_not_replace_newer_text(cfg, db, make_report):
    newer = mb.simple(attachments=[("a.docx", make_report({1: "八月十二日的新进展"}).read_bytes())], received=mb.when("2023-08-12"),
                      message_id="<newer@x.example>")
    older = mb.simple(attachments=[("b.docx", make_report({1: "八月五日的旧进展", 3: "只有旧的写了任务三"}).read_bytes())],
                      received=mb.when("2023-08-05"), message_id="<older@x.example>")
    ingest(cfg, db, newer)
    late_arrival = ingest(cfg, db, older)  # moved in from Junk a week later, or ingested by hand
    current = {r["task"]: r["progress"] for r in db.query("SELECT task, progress FROM progress WHERE unit = '民政局'")}
    assert current == {1: "八月十二日的新进展", 3: "只有旧的写了任务三"}
    assert db.execute("SELECT COUNT(*) FROM progress_history WHERE task = 1").fetchone()[0] == 2  # both versions kept
    assert late_arrival.superseded == [1] and late_arrival.status == "accepted"
    ack = json.loads(json.dumps(next(db.query("SELECT body_text FROM outbox WHERE dedupe_key = ?", [f"ack:{late_arrival.message_row}"]))))
    assert "已有收到时间更晚的报送" in ack["body_text"] and "以本次为准" not in ack["body_text"]
    # and the rebuild from the archive agrees with the live state
    from mailbot.maintenance import reindex

    target = cfg.state_dir / "rebuilt.db"
    reindex(cfg, target)
    rebuilt = sqlite3.connect(target)
    assert dict(rebuilt.execute("SELECT task, progress FROM progress WHERE unit = '民政局'").fetchall()) == current


def test_archive_sidecar_written_twice_at_once(cfg, monkeypatch):
    """Two prepares of the same bytes at once: the second sidecar write must not fail."""
    raw = mb.simple(subject="并发")
    digest, path = intake.archive(cfg.state_dir, raw)
    real_replace = os.replace
    nested = []

    def replace(src, dst):
        if not nested and str(dst).endswith(".json"):
            nested.append(1)
            intake.archive_meta(path, {"uid": 2})  # the other worker lands first
        return real_replace(src, dst)

    monkeypatch.setattr(intake.os, "replace", replace)
    intake.archive_meta(path, {"uid": 1})
    assert json.loads(path.with_suffix(".json").read_text(encoding="utf-8")) in ({"uid": 1}, {"uid": 2})
    assert not list(path.parent.glob(".tmp-*"))


def test_sweep_removes_only_old_temporary_files(cfg):
    streamed = cfg.state_dir / "archive" / ".tmp-big.eml"  # a large message streamed when the daemon was killed
    d = cfg.state_dir / "archive" / "ab"
    d.mkdir(parents=True)
    old, fresh, real = d / ".tmp-old", d / ".tmp-fresh", d / "ab12.eml"
    for f in (old, fresh, real, streamed):
        f.write_bytes(b"x")
    base = fresh.stat().st_mtime  # the file system's clock (the test process's may be shifted: scripts/test-at-hours)
    for f in (old, real, streamed):
        os.utime(f, (base - 7200, base - 7200))
    assert intake.sweep_archive_temp(cfg.state_dir) == 2
    assert not old.exists() and not streamed.exists() and fresh.exists() and real.exists()


def test_a_local_file_error_is_not_counted_as_a_mailbox_outage(cfg, db, monkeypatch):
    from mailbot import daemon

    class Boom:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            raise FileNotFoundError(2, "No such file or directory", str(cfg.state_dir / "archive" / "x.json"))

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(daemon, "Mailbox", Boom)
    rep = daemon.poll_mailbox(cfg, db)
    assert rep.poll_error and "状态目录" in rep.poll_error
    assert store.kv_get(db, "imap_failures") is None and store.kv_get(db, "imap_next_try") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_parse_workers_die_with_a_killed_parent(tmp_path):
    """SIGKILL the process that owns a worker pool: its workers (which ignore SIGTERM) go too."""
    code = (
        "import sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "import multiprocessing\n"
        "from mailbot import parse_worker\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context('spawn'), initializer=parse_worker.init, initargs=(None, 30))\n"
        "    list(pool.map(abs, [1, 2, 3, 4]))\n"
        "    import os\n"
        "    print(' '.join(str(p.pid) for p in pool._processes.values()), flush=True)\n"
        "    time.sleep(60)\n"
    )
    script = tmp_path / "owner.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") and "Z" not in _state(p) for p in pids):
        time.sleep(0.1)
    assert [p for p in pids if os.path.exists(f"/proc/{p}") and "Z" not in _state(p)] == []


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(line for line in fh if line.startswith("State:"))
    except (OSError, StopIteration):
        return "Z"
