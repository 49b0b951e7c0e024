"""Backfill throughput: N report mails in a private Dovecot, ingested end to end by one `poll --once` cycle.

    .venv/bin/python bench/backfill.py [-n 5000]

Prints messages/second for mailbot (fetch, archive, parse, store, queue the
acknowledgement; replies are not sent) and for the floor measured in the same
run: a bare UID FETCH of the same messages plus, per message, unzipping its
attachment and iterating the w:t elements of word/document.xml with lxml.

mailbot's poll runs in a child process of its own, so its memory is not mixed
with the generation of the test mail: peak RSS is sampled every 20 ms over that
process and its parse workers together (the sum), and printed with the peak of
the largest single process. Needs Dovecot (Debian dovecot-imapd).
"""

from __future__ import annotations

import argparse
import email
import imaplib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import datetime as dt  # noqa: E402

from mailbot import store  # noqa: E402
from mailbot.config import load_config  # noqa: E402

# Heavier imports (docxtpl for the forms, the Dovecot fixture) stay inside the functions that
# build the test mail: the measured poll runs in a child that imports this module, and its
# parse workers must look like the service's, not carry the benchmark's baggage.

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
TZ8 = dt.timezone(dt.timedelta(hours=8))


def make_messages(cfg, n: int):
    """n report mails from the roster's units, each with a filled form (20–60 KB), one at a time."""
    from mailbot.forms import render_form

    units = list(cfg.roster)
    forms = {}
    for i in range(n):
        unit = units[i % len(units)]
        if unit.name not in forms:
            tasks = cfg.roster.tasks_of(unit, cfg.ledger)
            text = "已按要求落实：通过政府网站和政务新媒体发布相关信息，开展政策解读，工作台账已建立并动态更新。" * 2
            forms[unit.name] = render_form(cfg, unit.name, progress={t: f"{text}（{t}）" for t in tasks}, contact="张三", phone="0951-1234567")
        msg = EmailMessage()
        msg["From"] = f"{unit.name} <{unit.emails[0]}>"
        msg["To"] = "bot@example.test"
        msg["Subject"] = f"{unit.name}台账报送（第{i}次）"
        msg["Date"] = format_datetime(dt.datetime(2023, 8, 1, 9, tzinfo=TZ8) + dt.timedelta(minutes=i))
        msg["Message-ID"] = make_msgid(idstring=str(i), domain="bench.example")
        msg.set_content(f"第{i}封")
        msg.add_attachment(forms[unit.name], maintype="application", subtype="vnd.openxmlformats-officedocument.wordprocessingml.document", filename=f"{unit.name}.docx")
        yield bytes(msg)


def load(dovecot, user: str, pw: str, messages) -> tuple[int, int]:
    """APPEND the messages; return the smallest and largest size."""
    lo, hi = 1 << 62, 0
    with dovecot.imap(user, pw) as c:
        for i, raw in enumerate(messages):
            lo, hi = min(lo, len(raw)), max(hi, len(raw))
            when = dt.datetime(2023, 8, 1, 9, tzinfo=TZ8) + dt.timedelta(minutes=i)
            c.append("INBOX", None, imaplib.Time2Internaldate(when), raw)
    return lo, hi


def floor(dovecot, user: str, pw: str) -> tuple[int, float]:
    """Bare UID FETCH of every message, then unzip + iterate w:t for each: the unavoidable work."""
    t0 = time.perf_counter()
    n = 0
    with dovecot.imap(user, pw) as c:
        c.select("INBOX", readonly=True)
        typ, data = c.uid("SEARCH", "UID 1:*")
        uids = data[0].split()
        for start in range(0, len(uids), 200):
            typ, data = c.uid("FETCH", b",".join(uids[start:start + 200]).decode(), "(BODY.PEEK[])")
            for item in data:
                if not isinstance(item, tuple):
                    continue
                msg = email.message_from_bytes(item[1])
                for part in msg.walk():
                    if part.get_filename():
                        with zipfile.ZipFile(io.BytesIO(part.get_payload(decode=True))) as zf:
                            root = etree.fromstring(zf.read("word/document.xml"))
                        sum(1 for _ in root.iter(W + "t"))
                n += 1
    return n, time.perf_counter() - t0


def _tree_rss_kb(pid: int) -> tuple[int, int]:
    """(sum, max) of VmRSS over a process and its descendants, in KB."""
    total = largest = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                rss = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):  # workers are started by a thread, not the main one
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest


def inner(cfg_path: str) -> None:
    """The measured part, in its own process: one poll cycle over the whole backlog."""
    from mailbot.daemon import poll_mailbox

    cfg = load_config(cfg_path)
    db = store.open_db(cfg.db_path)
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            total, largest = _tree_rss_kb(os.getpid())
            peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    report = poll_mailbox(cfg, db)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    assert report.poll is not None, report.summary()
    print(json.dumps({
        "seconds": seconds, "fetched": report.poll.fetched, "statuses": report.poll.statuses,
        "peak_tree_mb": peak[0] / 1024, "peak_process_mb": peak[1] / 1024,
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5000)
    args = ap.parse_args()

    from servers import Dovecot, write_bench_config

    work = Path(tempfile.mkdtemp(prefix="mailbot-bench-"))
    dovecot = Dovecot(work / "dovecot")
    dovecot.start()
    try:
        user, pw = "bot@example.test", "bench-pw"
        dovecot.add_user(user, pw)
        cfg_path = write_bench_config(work / "config.toml", state_dir=work / "state", imap_port=dovecot.port, user=user, password_env="BENCH_PW")
        os.environ["BENCH_PW"] = pw
        cfg = load_config(cfg_path)
        t0 = time.perf_counter()
        lo, hi = load(dovecot, user, pw, make_messages(cfg, args.n))
        print(f"loaded {args.n} messages ({lo // 1024}–{hi // 1024} KB) in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} cores")

        n_floor, floor_s = floor(dovecot, user, pw)
        # `-c`, not the script's path: spawned workers re-import a __main__ that has a file.
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import backfill; backfill.inner({str(cfg_path)!r})"
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["fetched"] == args.n, got
        floor_rate, rate = n_floor / floor_s, args.n / got["seconds"]
        print(f"floor   (UID FETCH + unzip + lxml w:t): {floor_rate:8.1f} msg/s  ({floor_s:.1f} s)")
        print(f"mailbot (fetch, archive, parse, store, queue ack): {rate:8.1f} msg/s  ({got['seconds']:.1f} s, {got['statuses']})")
        print(f"ratio mailbot/floor: {rate / floor_rate:.2f}   (target ≥ 0.5 and ≥ 100 msg/s)")
        print(f"peak RSS: {got['peak_tree_mb']:.0f} MB for mailbot and its parse workers together, "
              f"{got['peak_process_mb']:.0f} MB the largest process   (target < 200 MB)")
    finally:
        dovecot.cleanup()


if __name__ == "__main__":
    main()
