"""Idle poll cost vs mailbox size: one poll with no new mail on a folder of 100 and of 50,000 messages.

    .venv/bin/python bench/idle_poll.py [--small 100] [--big 50000] [--polls 20]

Each mailbox is a private Dovecot user whose Maildir is written directly (APPENDing
50,000 messages would take minutes); one warm-up session lets Dovecot index it. The
mailbot cursor is then set to the last UID, as after a first backfill, and the real
poll (`daemon.poll_mailbox`: connect, log in, ID, EXAMINE, UID SEARCH, log out) runs
`--polls` times. Prints per poll: IMAP round trips (tagged commands), bytes read
from and written to the server, and wall time (median), and the big/small ratios.
Target: at most 2× (flat). Needs Dovecot (Debian dovecot-imapd).
"""

from __future__ import annotations

import argparse
import imaplib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mailbot import mailbox as mailbox_mod  # noqa: E402
from mailbot import store  # noqa: E402
from mailbot.config import load_config  # noqa: E402
from mailbot.daemon import poll_mailbox  # noqa: E402
from servers import Dovecot, write_bench_config  # noqa: E402


class Meter:
    """Counts what crosses the IMAP connection by wrapping imaplib's socket I/O."""

    def __init__(self) -> None:
        self.commands = self.read = self.written = 0
        self._orig = (imaplib.IMAP4.send, imaplib.IMAP4.read, imaplib.IMAP4.readline, imaplib.IMAP4._command)

    def __enter__(self) -> "Meter":
        send, read, readline, command = self._orig
        meter = self

        def _send(self, data):
            meter.written += len(data)
            return send(self, data)

        def _read(self, size):
            data = read(self, size)
            meter.read += len(data)
            return data

        def _readline(self):
            data = readline(self)
            meter.read += len(data)
            return data

        def _command(self, name, *args):
            meter.commands += 1
            return command(self, name, *args)

        imaplib.IMAP4.send, imaplib.IMAP4.read, imaplib.IMAP4.readline, imaplib.IMAP4._command = _send, _read, _readline, _command
        return self

    def __exit__(self, *exc) -> None:
        imaplib.IMAP4.send, imaplib.IMAP4.read, imaplib.IMAP4.readline, imaplib.IMAP4._command = self._orig


def fill_maildir(dovecot: Dovecot, user: str, n: int) -> None:
    """n small report-like messages written straight into the user's Maildir/cur."""
    cur = dovecot.maildir(user) / "cur"
    for sub in ("cur", "new", "tmp"):
        (cur.parent / sub).mkdir(parents=True, exist_ok=True)
    base = int(time.time()) - n
    for i in range(n):
        raw = (
            f"From: unit{i % 40}@xixia.example\r\nTo: bot@example.test\r\nSubject: report {i}\r\n"
            f"Message-ID: <idle-{i}@bench.example>\r\nDate: Tue, 1 Aug 2023 09:00:00 +0800\r\n\r\nbody {i}\r\n"
        ).encode()
        (cur / f"{base + i}.M{i}P1.bench:2,").write_bytes(raw)
    if os.geteuid() == 0:
        for path in [cur.parent.parent, cur.parent, *[cur.parent / s for s in ("cur", "new", "tmp")], *cur.iterdir()]:
            os.chown(path, dovecot.mail_uid, dovecot.mail_gid)


def measure(dovecot: Dovecot, work: Path, user: str, pw: str, n: int, polls: int) -> dict:
    fill_maildir(dovecot, user, n)
    with dovecot.imap(user, pw) as c:  # Dovecot indexes the Maildir here, once
        typ, data = c.select("INBOX", readonly=True)
        exists = int(data[0])
        uidvalidity = int(c.untagged_responses["UIDVALIDITY"][0])
        typ, data = c.uid("SEARCH", "ALL")
        last_uid = max(int(x) for x in data[0].split())
    assert exists == n, (exists, n)
    cfg_path = write_bench_config(work / f"config-{n}.toml", state_dir=work / f"state-{n}", imap_port=dovecot.port, user=user, password_env=f"BENCH_PW_{n}")
    os.environ[f"BENCH_PW_{n}"] = pw
    cfg = load_config(cfg_path)
    db = store.open_db(cfg.db_path)
    mailbox_mod.advance_cursor(db, "INBOX", uidvalidity, last_uid)  # as after the first backfill
    poll_mailbox(cfg, db)  # warm-up (connection setup paths, Python imports)
    times, meters = [], []
    for _ in range(polls):
        with Meter() as meter:
            t0 = time.perf_counter()
            rep = poll_mailbox(cfg, db)
            times.append(time.perf_counter() - t0)
        assert rep.poll_error is None and rep.poll is not None and rep.poll.fetched == 0, rep.summary()
        meters.append(meter)
    return {
        "n": n,
        "commands": statistics.median(m.commands for m in meters),
        "read": statistics.median(m.read for m in meters),
        "written": statistics.median(m.written for m in meters),
        "ms": statistics.median(times) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--big", type=int, default=50_000)
    ap.add_argument("--polls", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailbot-idle-"))
    dovecot = Dovecot(work / "dovecot")
    dovecot.start()
    try:
        t0 = time.perf_counter()
        # Both users before the first login: Dovecot may miss a passwd-file rewritten twice within a second.
        dovecot.add_user("small@example.test", "pw-small")
        dovecot.add_user("big@example.test", "pw-big")
        small = measure(dovecot, work, "small@example.test", "pw-small", args.small, args.polls)
        big = measure(dovecot, work, "big@example.test", "pw-big", args.big, args.polls)
        print(f"set up {args.small} + {args.big} messages in {time.perf_counter() - t0:.1f} s; {args.polls} idle polls each (median)")
        print(f"{'messages':>10} {'round trips':>12} {'bytes read':>11} {'bytes sent':>11} {'ms':>8}")
        for row in (small, big):
            print(f"{row['n']:>10} {row['commands']:>12.0f} {row['read']:>11.0f} {row['written']:>11.0f} {row['ms']:>8.1f}")
        ratios = {k: big[k] / small[k] for k in ("commands", "read", "written", "ms")}
        print(f"{'ratio':>10} {ratios['commands']:>12.2f} {ratios['read']:>11.2f} {ratios['written']:>11.2f} {ratios['ms']:>8.2f}")
        verdict = "met" if max(ratios.values()) <= 2 else "NOT met"
        print(f"target: {args.big} / {args.small} ≤ 2× on every measure → {verdict}")
    finally:
        dovecot.cleanup()


if __name__ == "__main__":
    main()
