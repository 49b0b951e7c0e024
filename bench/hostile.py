"""Hostile and broken mail (issues 5 and 11): every corpus message through the daemon's path, one process each.

    .venv/bin/python bench/hostile.py [--only GLOB] [--no-big] [--no-flood] [--in-process] [--deadline S] [--json FILE]

The corpus is tests/hostile_corpus.py (the one tests/test_hostile.py uses). Each item is
written to a file and handled by a fresh child process against a fresh state
directory, as the daemon handles a message: analysed in a parse worker process under
the limits ([bot] parse_timeout_seconds, parse_memory_mb; `parse_worker.WorkerPool`),
then committed (`intake.commit`). Its time and peak RSS belong to that item alone:
*worker* is the parse worker's VmHWM (interpreter, imports, the message and all
parsing), *parent* the child's own (the raw message, the prepared result, the commit).
``--in-process`` runs `intake.ingest` in the child instead, with no worker and no limits
(the code path of `mailbot ingest`). One more item, ``deadline/parse_never_ends``, makes
its worker hang for good (a test hook loaded by the worker) under a deadline of
``--deadline`` seconds: it must end quarantined with reason code ``timeout``.
The parent then opens the child's database: a message is *lost* when it has no
recorded row or its archived copy is missing or differs; a *crash* is an exception
out of ingest, a non-zero exit or the timeout. The flood is 1,000 messages from one
roster address in one state, then the outbox delivered to a stub SMTP server.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
PER_ITEM_TIMEOUT = 600
MEMORY_CAP = 8 << 30  # address space per child: an unbounded allocation fails here instead of swapping


def write_config(state_dir: Path) -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8").replace('state_dir = "state"', f'state_dir = "{state_dir}"', 1)
    path = state_dir.parent / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- child ----------------------------------------------------------------------------------------------


def _cap_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, because ru_maxrss also counts the parent's memory at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_item(raw_file: str, config: str, mode: str = "worker") -> dict:
    from mailbot import intake, parse_worker, store
    from mailbot.config import load_config

    cfg = load_config(config)
    if mode.startswith("worker:"):
        cfg.bot["parse_timeout_seconds"] = float(mode.partition(":")[2])
    db = store.open_db(cfg.db_path)
    out: dict = {"baseline_mb": peak_rss_mb()}
    raw = Path(raw_file).read_bytes()
    t0 = time.perf_counter()
    try:
        if mode == "in-process":
            res = intake.ingest(cfg, db, raw)
        else:  # the daemon's path: a worker process with the deadline and the memory cap, then the commit here
            pool = parse_worker.WorkerPool(cfg, 1)
            try:
                future = pool.submit(raw, {"source": "imap", "folder": "INBOX", "uidvalidity": 1, "uid": 1})
                try:
                    prepared = future.result()
                except parse_worker.AnalysisFailed as failed:
                    prepared = intake.prepare_failed(cfg, raw, failed.what, code=failed.code, source="imap", folder="INBOX", uidvalidity=1, uid=1)
                out["worker_mb"] = getattr(future, "worker_peak_mb", None)  # None: killed at its deadline
                out["killed"] = pool.killed
            finally:
                pool.close()
            res = intake.commit(cfg, db, prepared)
        out.update(status=res.status, code=res.reason_code, reason=res.reason)
    except BaseException as err:  # noqa: BLE001 - that is what we count
        out.update(crash=f"{type(err).__name__}: {str(err)[:200]}")
    out["seconds"] = time.perf_counter() - t0
    out["peak_mb"] = max(peak_rss_mb(), out.get("worker_mb") or 0)
    out["parent_mb"] = peak_rss_mb()
    return out


def child_flood(config: str, n: int) -> dict:
    import datetime as dt

    import hostile_corpus as hc

    from mailbot import outbox, store
    from mailbot.config import load_config
    from mailbot.intake import ingest

    cfg = load_config(config)
    db = store.open_db(cfg.db_path)
    statuses: collections.Counter = collections.Counter()
    crashes, t0, slowest = 0, time.perf_counter(), 0.0
    for raw in hc.flood(n):
        t = time.perf_counter()
        try:
            statuses[ingest(cfg, db, raw).status] += 1
        except BaseException:  # noqa: BLE001
            crashes += 1
        slowest = max(slowest, time.perf_counter() - t)
    ingest_seconds = time.perf_counter() - t0

    class StubSMTP:
        def send_message(self, message, from_addr=None, to_addrs=None):
            bytes(message)
            return {}

        def quit(self):
            pass

    outbox._connect_smtp = lambda cfg: StubSMTP()
    now = dt.datetime(2023, 8, 10, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    sent = suppressed = 0
    while True:
        stats = outbox.deliver(cfg, db, now=now)
        sent, suppressed = sent + stats.sent, suppressed + stats.suppressed
        if not (stats.sent or stats.suppressed or stats.retried or stats.failed):
            break
    return {
        "statuses": dict(statuses), "crashes": crashes, "seconds": ingest_seconds, "max_item_seconds": slowest,
        "deliver_seconds": time.perf_counter() - t0 - ingest_seconds, "sent": sent, "suppressed": suppressed,
        "queued": db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
        "limit": cfg.smtp.options["max_replies_per_address_per_day"],
        "peak_mb": peak_rss_mb(),
    }


# --- parent ----------------------------------------------------------------------------------------------


HANG_HOOK = """
import os
if os.environ.get("MAILBOT_BENCH_HANG_ON"):
    from mailbot import intake
    _real_prepare = intake.prepare

    def prepare(cfg, raw, **kwargs):
        import multiprocessing
        in_worker = multiprocessing.parent_process() is not None  # not the bench's child recording the timeout
        if in_worker and os.environ["MAILBOT_BENCH_HANG_ON"].encode() in raw:
            import time
            while True:
                time.sleep(1)
        return _real_prepare(cfg, raw, **kwargs)

    intake.prepare = prepare
"""


def hang_env(tmp: Path) -> dict:
    """The environment of a child whose parse workers hang on a marked message (sitecustomize)."""
    hook = tmp / "hanghook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HANG_HOOK)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]), MAILBOT_BENCH_HANG_ON="X-Bench-Hang")


def run_child(args: list[str], env: dict | None = None) -> tuple[dict | None, str]:
    try:
        proc = subprocess.run(
            [sys.executable, __file__, *args], capture_output=True, text=True, timeout=PER_ITEM_TIMEOUT, env=env
        )
    except subprocess.TimeoutExpired:
        return None, f"timeout after {PER_ITEM_TIMEOUT} s"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return None, f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] or ['']}"
    return json.loads(lines[-1]), ""


def recorded(state: Path, raw: bytes) -> tuple[bool, str | None]:
    """(lost, status): the parent's own look at what the child left behind."""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        con = sqlite3.connect(state / "mailbot.db")
        rows = con.execute("SELECT status, reason, archive_path FROM messages WHERE sha256 = ?", [digest]).fetchall()
        con.close()
    except sqlite3.Error:
        return True, None
    if len(rows) != 1:
        return True, None
    status, reason, archive_path = rows[0]
    archived = Path(archive_path)
    ok = archived.is_file() and hashlib.sha256(archived.read_bytes()).hexdigest() == digest
    ok = ok and (status == "accepted" or bool(reason))
    return not ok, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="*", help="glob over category/name, e.g. 'zip_bomb/*'")
    parser.add_argument("--no-big", action="store_true", help="leave out the 50–70 MB messages")
    parser.add_argument("--no-flood", action="store_true")
    parser.add_argument("--flood", type=int, default=1000)
    parser.add_argument("--in-process", action="store_true", help="intake.ingest in the child: no worker process, no limits")
    parser.add_argument("--deadline", type=float, default=10, help="parse_timeout_seconds for the parse that never ends (default 10)")
    parser.add_argument("--json", help="write every item's result here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _cap_memory()
        kind, *rest = args.child
        out = child_item(*rest) if kind == "item" else child_flood(rest[0], int(rest[1]))
        print(json.dumps(out, ensure_ascii=False))
        return 0

    import hostile_corpus as hc

    from mailbot.config import load_config
    from mailbot.ledger import load_ledger

    with tempfile.TemporaryDirectory() as tmp:
        good = hc.good_report(load_ledger().to_dict(), Path(tmp))
    items = hc.Corpus(good, load_config(ROOT / "config.toml")).items(big=not args.no_big)
    if not args.in_process:  # a parse that never ends (a test hook in the worker), stopped by the deadline
        items.append(hc.Item("deadline", "parse_never_ends", lambda: hc.message([hc.part(good)], headers=b"X-Bench-Hang: 1\r\n"),
                             "quarantined", "timeout", f"--deadline {args.deadline} s"))
    items = [i for i in items if fnmatch.fnmatch(i.id, args.only)]
    results = []
    print(f"{len(items)} corpus items, one child process each (python {sys.version.split()[0]}, {os.cpu_count()} cores)", file=sys.stderr)
    for n, item in enumerate(items, 1):
        with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
            state = Path(tmp) / "state"
            state.mkdir()
            config = write_config(state)
            raw = item.raw()
            raw_file = Path(tmp) / "message.eml"
            raw_file.write_bytes(raw)
            mode, env = ("in-process" if args.in_process else "worker"), None
            if item.category == "deadline":
                mode, env = f"worker:{args.deadline}", hang_env(Path(tmp))
            out, error = run_child(["--child", "item", str(raw_file), str(config), mode], env)
            lost, status = recorded(state, raw)
        out = out or {}
        crash = error or out.get("crash")
        expected = status in item.statuses() and (item.codes() is None or out.get("code") in item.codes())
        results.append({
            "id": item.id, "category": item.category, "bytes": len(raw), "status": status, "code": out.get("code"),
            "crash": crash, "lost": lost, "expected": expected, "seconds": out.get("seconds"), "peak_mb": out.get("peak_mb"),
            "baseline_mb": out.get("baseline_mb"), "worker_mb": out.get("worker_mb"), "parent_mb": out.get("parent_mb"),
            "killed": out.get("killed", 0),
        })
        mark = "CRASH" if crash else ("LOST" if lost else ("" if expected else "unexpected"))
        print(f"[{n:3}/{len(items)}] {item.id:58} {len(raw) / 1e6:7.2f} MB  {status or '-':11} {out.get('code') or '':22} "
              f"{out.get('seconds', 0):6.2f} s {out.get('worker_mb') or 0:7.0f} MB worker {out.get('parent_mb') or out.get('peak_mb', 0):5.0f} MB parent {mark}",
              file=sys.stderr, flush=True)

    flood = None
    if not args.no_flood:
        with tempfile.TemporaryDirectory(prefix="hostile-flood-") as tmp:
            state = Path(tmp) / "state"
            state.mkdir()
            flood, error = run_child(["--child", "flood", str(write_config(state)), str(args.flood)])
            flood = flood or {"crash": error}
            try:
                con = sqlite3.connect(state / "mailbot.db")
                flood["recorded"] = con.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
                archived = sum(1 for _ in (state / "archive").rglob("*.eml"))
                con.close()
            except sqlite3.Error:
                flood["recorded"], archived = 0, 0
            flood["lost"] = args.flood - min(flood["recorded"], archived)

    print_table(results, flood, args.flood)
    if args.json:
        Path(args.json).write_text(json.dumps({"items": results, "flood": flood}, ensure_ascii=False, indent=1), encoding="utf-8")
    bad = sum(1 for r in results if r["crash"] or r["lost"]) + (1 if flood and (flood.get("crash") or flood.get("crashes") or flood.get("lost")) else 0)
    return 1 if bad else 0


def print_table(results: list[dict], flood: dict | None, flood_n: int) -> None:
    by_cat: dict[str, list[dict]] = collections.defaultdict(list)
    for r in results:
        by_cat[r["category"]].append(r)
    head = (f"{'category':13} {'tried':>5} {'crashes':>7} {'lost':>4} {'unexp.':>6}  {'max s':>6} {'worker':>7} {'parent':>7} "
            f"{'biggest':>8}  final statuses")
    print(head)
    print("-" * len(head) + "-" * 30)
    for cat, rows in by_cat.items():
        statuses = collections.Counter(r["status"] or "none" for r in rows)
        codes = collections.Counter(r["code"] for r in rows if r["code"] in ("timeout", "too_complex"))
        print(
            f"{cat:13} {len(rows):5} {sum(bool(r['crash']) for r in rows):7} {sum(r['lost'] for r in rows):4} "
            f"{sum(not r['expected'] for r in rows):6}  {max(r['seconds'] or 0 for r in rows):6.2f} "
            f"{max(r.get('worker_mb') or 0 for r in rows):4.0f} MB {max(r.get('parent_mb') or r['peak_mb'] or 0 for r in rows):4.0f} MB "
            f"{max(r['bytes'] for r in rows) / 1e6:5.1f} MB  "
            + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
            + "".join(f"; {k} {v}" for k, v in sorted(codes.items()))
        )
    tried = len(results)
    crashes = sum(bool(r["crash"]) for r in results)
    lost = sum(r["lost"] for r in results)
    peak = max([r["peak_mb"] or 0 for r in results] or [0])
    if flood is not None:
        f_crash = int(bool(flood.get("crash"))) + flood.get("crashes", 0)
        print(
            f"{'flood':13} {flood_n:5} {f_crash:7} {flood.get('lost', flood_n):4} {'':6}  {flood.get('max_item_seconds', 0):6.2f} "
            f"{flood.get('peak_mb', 0):6.0f} MB {'':8}  "
            + ", ".join(f"{k} {v}" for k, v in sorted(flood.get("statuses", {}).items()))
            + f"; {flood.get('seconds', 0):.1f} s in all; replies queued {flood.get('queued')}, sent {flood.get('sent')}, "
            f"suppressed {flood.get('suppressed')} (limit {flood.get('limit')} per address per day)"
        )
        tried += flood_n
        crashes += f_crash
        lost += flood.get("lost", flood_n)
        peak = max(peak, flood.get("peak_mb", 0))
    baseline = min([r["baseline_mb"] for r in results if r["baseline_mb"]] or [0])
    unexpected = [r["id"] for r in results if not r["expected"] and not r["crash"]]
    if unexpected:
        print("not the expected status or reason: " + ", ".join(unexpected))
    for r in results:
        if r["crash"]:
            print(f"crash: {r['id']}: {r['crash']}")
    killed = sum(r.get("killed") or 0 for r in results)
    print(f"\ninputs tried {tried}, crashes {crashes}, lost {lost}, workers killed at their deadline {killed}, "
          f"peak memory {peak:.0f} MB (RSS of one process; the interpreter and imports alone: {baseline:.0f} MB)")


if __name__ == "__main__":
    sys.exit(main())
