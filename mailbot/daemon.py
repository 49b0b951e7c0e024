"""The daemon: apscheduler jobs for polling and outbox delivery; one cycle for `poll --once`.

Failures are isolated and visible: a login refusal is a configuration error
(one clear log line, the coordinator told once, no hammering); a network error
backs off and, when it lasts, is reported once per outage (QUIRKS 3, 8).

Local faults are visible too, never an apscheduler traceback: every job runs under
``_run_job``. A state directory that is read-only or full, or a database that cannot
be written, gives one Chinese line per cycle and one alert a day (queued in the
outbox when the database takes it, else mailed directly, ``_direct_alert``).

The database is checked before anything is taken from the mailbox
(``establish_database``): it carries an identity (``kv.db_id``, mirrored in
``state/mailbot.db.id``). An empty or missing database next to a non-empty archive is
refused at start (``mailbot reindex`` rebuilds it, replies marked sent); a rebuilt or
restored one (it holds messages) is accepted. Under a running daemon, a database
that disappears or is replaced stops polling, delivery and notices (each cycle says
so) and the coordinator is mailed directly, once a day: its outbox is in that database.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import signal
import smtplib
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import store
from .config import Config
from .errors import ConfigError, MailbotError
from .mailbox import LoginRefused, Mailbox, MailboxError, PollStats, is_connection_error, poll_folders
from .outbox import DeliveryStats, deliver, queue_mail

log = logging.getLogger("mailbot")

OUTAGE_ALERT_AFTER = 3  # consecutive failed polls before the coordinator hears about it


@dataclass
class CycleReport:
    poll: PollStats | None = None
    delivery: DeliveryStats = field(default_factory=DeliveryStats)
    poll_error: str | None = None
    skipped_poll: str | None = None

    def summary(self) -> str:
        """One or two lines in Chinese for `poll --once` and the log."""
        labels = {"accepted": "登记", "rejected": "退回", "quarantined": "隔离", "duplicate": "重复", "ignored": "忽略"}
        parts = []
        if self.poll_error:
            parts.append(f"收信失败：{self.poll_error}")
        elif self.skipped_poll:
            parts.append(self.skipped_poll)
        elif self.poll is not None:
            counts = "，".join(f"{labels.get(k, k)} {v}" for k, v in sorted(self.poll.statuses.items())) or "无"
            parts.append(f"收取新邮件 {self.poll.fetched} 封（{counts}）")
            parts.extend(self.poll.errors)
            if self.poll.rescans:
                parts.append(f"文件夹 {'、'.join(self.poll.rescans)} 的 UIDVALIDITY 已变化，已重新扫描")
        d = self.delivery
        line = f"发送 {d.sent} 封"
        if d.retried:
            line += f"，{d.retried} 封稍后重试"
        if d.failed:
            line += f"，{d.failed} 封失败"
        if d.suppressed:
            line += f"，{d.suppressed} 封按规则未发送"
        parts.append(line)
        return "；".join(parts)


def _alert(cfg: Config, db, key: str, subject: str, text: str) -> None:
    if not cfg.coordinator_emails:
        return
    with store.write_transaction(db):
        queue_mail(
            db, cfg, dedupe_key=key, kind="alert", to=list(cfg.coordinator_emails), subject=subject,
            template="alert", context={"text": text, "coordinator": True},
        )


def clear_backoff(cfg: Config, db=None) -> bool:
    """Forget the IMAP back-off (after a restart, a successful `check`, a manual poll): the next
    poll tries at once. The outage record stays, so a recovery is still reported. True if one was set."""
    own = db is None
    db = store.open_db(cfg.db_path) if own else db
    try:
        pending = store.kv_get(db, "imap_next_try")
        store.kv_set(db, "imap_next_try", None)  # the failure count stays: the digest still shows the outage
        return pending is not None
    finally:
        if own:
            db.close()


def poll_mailbox(
    cfg: Config, db, stop: threading.Event | None = None, now: dt.datetime | None = None, *, retry_now: bool = False, progress=None
) -> CycleReport:
    """Fetch and ingest new mail, with back-off after failures; never raises for mailbox trouble.

    ``retry_now``: a person asked for this poll (`poll --once`): ignore the back-off."""
    report = CycleReport()
    now = now or store.now_utc()
    next_try = store.kv_get(db, "imap_next_try")
    if next_try and dt.datetime.fromisoformat(next_try) > now and not retry_now:
        report.skipped_poll = f"上次收信失败，{dt.datetime.fromisoformat(next_try).astimezone(cfg.tz):%H:%M} 后再试"
        return report
    try:
        with Mailbox(cfg.imap, timeout=cfg.imap.options.get("timeout_seconds", 60)) as mailbox:
            report.poll = poll_folders(cfg, db, mailbox, stop, progress)
    except LoginRefused as err:
        _failed(cfg, db, now, str(err), login=True)
        report.poll_error = str(err)
    except (MailboxError, ConfigError) as err:
        _failed(cfg, db, now, str(err), login=isinstance(err, ConfigError))
        report.poll_error = str(err)
    except sqlite3.Error as err:
        # The database is busy, full or broken: the message in hand was not recorded and its
        # UID not passed, so it is fetched again next time. Not the mailbox's fault.
        report.poll_error = state_fault_text(cfg, err) or f"数据库错误（邮件未丢失，下次收信时重试）：{err}"
        _fault_line(cfg, report.poll_error)
        if not _is_busy(err):
            _local_trouble(cfg, db, now, report.poll_error)
        return report
    except Exception as err:  # noqa: BLE001 - network errors surface as many types
        if _is_file_error(err):
            # A file operation failed (sockets carry no file name): our disk, not the mailbox.
            report.poll_error = state_fault_text(cfg, err)
            _fault_line(cfg, report.poll_error)
            _local_trouble(cfg, db, now, report.poll_error)
            return report
        if not is_connection_error(err):
            log.exception("unexpected error while polling")
        _failed(cfg, db, now, f"收信时连接中断：{type(err).__name__}: {str(err)[:200]}", login=False)
        report.poll_error = f"{type(err).__name__}: {str(err)[:200]}"
    else:
        if report.poll.errors:
            _local_trouble(cfg, db, now, "；".join(report.poll.errors), key="folder")
        if store.kv_get(db, "imap_failures"):
            log.info("mailbox reachable again")
        store.kv_set(db, "imap_failures", None)
        store.kv_set(db, "imap_next_try", None)
        store.kv_set(db, "imap_outage_since", None)
    return report


def _local_trouble(cfg: Config, db, now: dt.datetime, message: str, key: str = "local") -> None:
    """Tell the coordinator once a day that something here (disk, database, a folder) needs a person:
    through the outbox when the database takes the row, else by mail straight away."""
    day = now.astimezone(cfg.tz).date().isoformat()
    subject = "【台账机器人】邮箱文件夹无法读取，需要处理" if key == "folder" else "【台账机器人】服务器存储故障，需要处理"
    alert_key = f"alert:{key}:{day}"
    with _direct_lock:
        if _remembered(cfg, alert_key):  # already queued, or mailed directly, today
            return
        try:
            if db is None:
                raise sqlite3.OperationalError("no usable database")
            _alert(cfg, db, alert_key, subject, message)
            _remember(cfg, alert_key)
        except (sqlite3.Error, OSError):
            _direct_alert(cfg, alert_key, subject, message, now)


def _failed(cfg: Config, db, now: dt.datetime, message: str, *, login: bool) -> None:
    failures = int(store.kv_get(db, "imap_failures") or 0) + 1
    store.kv_set(db, "imap_failures", str(failures))
    since = store.kv_get(db, "imap_outage_since") or store.iso(now)
    store.kv_set(db, "imap_outage_since", since)
    interval = cfg.bot["poll_interval_seconds"]
    if login:
        # Credentials will not fix themselves; retrying fast only gets the account locked.
        wait = min(1800 * 2 ** (failures - 1), 6 * 3600)
    else:
        wait = min(interval * 2 ** (failures - 1), 1800)
    next_try = now + dt.timedelta(seconds=wait)
    store.kv_set(db, "imap_next_try", store.iso(next_try))
    log.error(
        "%s (failure %d in a row; next try at %s, in %d s; a restart, `mailbot check` or `mailbot poll` retries at once)",
        message, failures, next_try.astimezone(cfg.tz).strftime("%Y-%m-%d %H:%M:%S%z"), wait,
    )
    if login or failures >= OUTAGE_ALERT_AFTER:
        _alert(
            cfg, db, f"alert:imap:{since}",
            "【台账机器人】收信失败，需要处理",
            f"自 {dt.datetime.fromisoformat(since).astimezone(cfg.tz):%Y-%m-%d %H:%M} 起无法收取邮箱 {cfg.imap.user} 的邮件（已连续失败 {failures} 次）。\n原因：{message}\n系统会自动重试；恢复后会补收期间的全部邮件，不会遗漏。",
        )


def run_cycle(
    cfg: Config, stop: threading.Event | None = None, now: dt.datetime | None = None, *, retry_now: bool = False, progress=None
) -> CycleReport:
    """One full cycle: fetch and ingest every new message, then deliver the outbox.

    ``retry_now``: ignore an IMAP back-off (a person asked for this cycle). Raises
    DatabaseProblem (one line) for a missing or new database next to a non-empty archive."""
    establish_database(cfg)
    _sweep_conversions(cfg)
    db = store.open_db(cfg.db_path)
    try:
        report = poll_mailbox(cfg, db, stop, now, retry_now=retry_now, progress=progress)
        report.delivery = _deliver(cfg, db, now=now, stop=stop)
        return report
    finally:
        db.close()


def deliver_job(cfg: Config, stop: threading.Event | None = None) -> DeliveryStats:
    db = store.open_db(cfg.db_path)
    try:
        return _deliver(cfg, db, stop=stop)
    finally:
        db.close()


class _SentCopier:
    """Appends what we send to the mailbox's Sent folder, over one IMAP session per delivery run."""

    def __init__(self, cfg: Config, folder: str):
        self.cfg, self.folder = cfg, folder
        self.mailbox: Mailbox | None = None
        self.target: str | None = None

    def __call__(self, message) -> None:
        if self.mailbox is None:
            self.mailbox = Mailbox(self.cfg.imap).connect()
            found = self.mailbox.resolve_folders((self.folder,))
            self.target = found[0] if found else None
        if self.target:
            self.mailbox.append(self.target, bytes(message))

    def close(self) -> None:
        if self.mailbox is not None:
            self.mailbox.close()
            self.mailbox = None


def _sent_copier(cfg: Config) -> _SentCopier | None:
    folder = cfg.smtp.options.get("save_to_sent") or ""
    return _SentCopier(cfg, folder) if folder else None


def _deliver(cfg: Config, db, *, now=None, stop=None) -> DeliveryStats:
    due = db.execute(
        "SELECT 1 FROM outbox WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) LIMIT 1",
        [store.iso(now or store.now_utc())],
    ).fetchone()
    if not due:
        return DeliveryStats()
    # A mail whose sending cannot be recorded (disk full, read-only database) would go out again
    # every run: the database must take a write before anything is sent.
    store.kv_set(db, "outbox_write_check", store.iso(store.now_utc()))
    copier = _sent_copier(cfg)
    try:
        return deliver(cfg, db, now=now, stop=stop, sent_copy=copier)
    finally:
        if copier is not None:
            copier.close()


def run(cfg: Config) -> None:
    """Run until SIGTERM/SIGINT; stop cleanly after the message being processed."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    from .intake import sweep_archive_temp

    db_id = _start_database(cfg)
    if swept := sweep_archive_temp(cfg.state_dir):
        log.info("removed %d temporary files left in the archive by an earlier crash", swept)
    _sweep_conversions(cfg)
    try:
        if clear_backoff(cfg):
            log.info("an earlier mailbox failure had set a back-off: cleared at start-up, polling now")
    except Exception as err:  # noqa: BLE001 - a state fault: the jobs say so, every cycle
        if state_fault_text(cfg, err) is None:
            raise
    stop = threading.Event()
    scheduler = BlockingScheduler(timezone=cfg.tz, job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 300})

    now = dt.datetime.now(cfg.tz)
    scheduler.add_job(_run_job, "interval", args=(cfg, "poll", poll_job, stop, db_id), seconds=cfg.bot["poll_interval_seconds"], id="poll", next_run_time=now)
    scheduler.add_job(
        _run_job, "interval", args=(cfg, "outbox", outbox_job, stop, db_id), seconds=cfg.bot["outbox_interval_seconds"], id="outbox",
        next_run_time=now + dt.timedelta(seconds=2),
    )
    scheduler.add_job(
        _run_job, "interval", args=(cfg, "notices", notices_job, stop, db_id), seconds=cfg.notices["interval_seconds"], id="notices",
        next_run_time=now + dt.timedelta(seconds=5),
    )

    def on_signal(signum, _frame) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            raise SystemExit(1)
        log.info("signal %s: stopping after the current message", signal.Signals(signum).name)
        stop.set()
        threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "mailbot running: mailbox %s@%s %s, every %d s; state in %s",
        cfg.imap.user, cfg.imap.host, ",".join(cfg.imap.folders), cfg.bot["poll_interval_seconds"], cfg.state_dir,
    )
    from .convert import configure_warm, note_confinement, probe_confinement, shutdown_warm, soffice_path

    if soffice_path():
        note_confinement(probe_confinement(), "cold")  # which protection conversions have here, in the log at start
    configure_warm(cfg)  # the daemon keeps LibreOffice warm; one-shot commands and parse workers convert cold
    try:
        scheduler.start()
    finally:
        shutdown_warm()
    log.info("mailbot stopped")


def _start_database(cfg: Config) -> str:
    """The identity the daemon's jobs will hold the database to (``establish_database``).

    A database refused for its identity ends the start (one line; the coordinator mailed once a
    day). A state directory that cannot be used right now (read-only, full, failing) does not: when
    the sidecar says which database belongs here, the daemon starts, each cycle says what is wrong,
    the coordinator is told once a day, and the jobs resume by themselves once it is fixed."""
    try:
        return establish_database(cfg)
    except DatabaseProblem as err:
        _direct_alert(cfg, f"alert:database:{_today(cfg)}", DATABASE_ALERT_SUBJECT, str(err), store.now_utc(), need_record=True)
        raise
    except Exception as err:  # noqa: BLE001 - told apart just below
        text = state_fault_text(cfg, err)
        known = _read_id_file(cfg)
        if text is None or known is None:
            raise
        _fault_line(cfg, text)
        _local_trouble(cfg, None, store.now_utc(), text)
        return known


def poll_job(cfg: Config, stop: threading.Event | None = None, db_id: str | None = None) -> CycleReport:
    """The daemon's poll: the database checked first (``open_watched``), then ``poll_mailbox``."""
    db = open_watched(cfg, db_id)
    try:
        report = poll_mailbox(cfg, db, stop)
        if report.poll and (report.poll.fetched or report.poll.rescans):
            log.info("poll: %s", report.summary())
        elif report.skipped_poll:
            log.info("poll skipped: %s", report.skipped_poll)
        return report
    finally:
        db.close()


def outbox_job(cfg: Config, stop: threading.Event | None = None, db_id: str | None = None) -> DeliveryStats:
    db = open_watched(cfg, db_id)
    try:
        stats = _deliver(cfg, db, stop=stop)
    finally:
        db.close()
    if stats.sent or stats.failed or stats.retried:
        log.info("outbox: sent %d, retry %d, failed %d, suppressed %d", stats.sent, stats.retried, stats.failed, stats.suppressed)
    return stats


def notices_job(cfg: Config, stop: threading.Event | None = None, db_id: str | None = None, now: dt.datetime | None = None) -> int:
    """Queue the reminders, overdue notices and digests due now; delivery follows in the outbox job."""
    from .notices import queue_notices

    db = open_watched(cfg, db_id)
    try:
        queued = queue_notices(cfg, db, now or store.now_utc())
        if queued:
            log.info("notices: queued %s", ", ".join(n.dedupe_key for n in queued))
        return len(queued)
    finally:
        db.close()


# --- every job under one roof: no apscheduler traceback, one line per cycle, one alert a day ------


_alerted: set[str] = set()  # alert keys queued or mailed by this process (the outbox dedupes across processes)
_fault_lines: dict[str, float] = {}
_fault_lock = threading.Lock()


def _run_job(cfg: Config, name: str, job, stop: threading.Event | None = None, db_id: str | None = None):
    """Run one scheduled job; whatever goes wrong is logged here, as one line when it is a known fault."""
    try:
        return job(cfg, stop, db_id)
    except DatabaseProblem as err:
        _fault_line(cfg, str(err))
        _direct_alert(cfg, f"alert:database:{_today(cfg)}", DATABASE_ALERT_SUBJECT, str(err), store.now_utc())
    except Exception as err:  # noqa: BLE001 - a job must never end in apscheduler's traceback
        text = state_fault_text(cfg, err)
        if text is None:
            log.exception("%s job failed unexpectedly", name)
            return None
        _fault_line(cfg, text)
        if _is_busy(err):
            return None
        db = None
        if not isinstance(err, sqlite3.Error):  # a file fault: the database may still take the alert
            try:
                db = open_watched(cfg, db_id)
            except Exception:  # noqa: BLE001 - then it is mailed directly
                db = None
        try:
            _local_trouble(cfg, db, store.now_utc(), text)
        finally:
            if db is not None:
                db.close()
    return None


def _remember(cfg: Config, key: str) -> None:
    _alerted.add(f"{cfg.db_path}|{key}")


def _remembered(cfg: Config, key: str) -> bool:
    return f"{cfg.db_path}|{key}" in _alerted


def _fault_line(cfg: Config, text: str) -> None:
    """Log a local fault: one ERROR line, the same text at most once per poll interval (all jobs together)."""
    now = time.monotonic()
    every = max(1.0, float(cfg.bot.get("poll_interval_seconds", 120)) - 1)
    with _fault_lock:
        last = _fault_lines.get(text)
        if last is not None and now - last < every:
            return
        _fault_lines[text] = now
    log.error("%s", text)


STATE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def _is_file_error(err: BaseException) -> bool:
    """A failed file operation (ours: the state directory), not a network error. An ssl.SSLError
    carries OpenSSL's error code in errno (1, 5 …), and sockets carry no file name."""
    import socket
    import ssl

    if not isinstance(err, OSError) or isinstance(err, (ssl.SSLError, ConnectionError, TimeoutError, socket.gaierror, socket.herror)):
        return False
    return err.errno in STATE_ERRNOS or err.filename is not None


def _is_busy(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def state_fault_text(cfg: Config, err: BaseException) -> str | None:
    """One Chinese line for a fault of the state directory or the database; None for anything else."""
    tail = "邮件未丢失，恢复后自动补收"
    where = cfg.state_dir
    if isinstance(err, sqlite3.Error):
        msg = str(err).lower()
        if "locked" in msg or "busy" in msg:
            return f"数据库 {cfg.db_path} 被其他程序长时间占用（{err}）：本轮暂停，下轮重试；{tail}"
        if "full" in msg:
            return f"状态目录 {where} 所在磁盘已满（{err}）：请清理磁盘；{tail}"
        if "readonly" in msg or "read-only" in msg:
            return f"状态目录 {where} 只读，无法写入数据库（{err}）：请检查挂载和权限；{tail}"
        if "unable to open" in msg:
            return f"无法打开数据库 {cfg.db_path}（{err}）：请检查状态目录 {where} 的权限和磁盘；{tail}"
        if "i/o" in msg:
            return f"数据库 {cfg.db_path} 读写出错（{err}）：请检查磁盘（空间、只读、故障）；{tail}"
        if "malformed" in msg or "not a database" in msg:
            return f"数据库 {cfg.db_path} 已损坏（{err}）：请停止服务，从备份恢复或运行 mailbot reindex 重建"
        return f"数据库错误（{err}）：请检查状态目录 {where}；{tail}"
    if _is_file_error(err):
        name = f"：{err.filename}" if err.filename else ""
        return f"无法写入状态目录 {where}（{err.strerror or err}{name}）：请清理磁盘或检查权限；{tail}"
    if isinstance(err, store.SchemaError):
        return str(err)
    return None


def _today(cfg: Config) -> str:
    return store.now_utc().astimezone(cfg.tz).date().isoformat()


# --- the database's identity ---------------------------------------------------------------------

DATABASE_ALERT_SUBJECT = "【台账机器人】数据库丢失或被替换，已停止收发邮件，需要处理"


class DatabaseProblem(MailbotError):
    """The database is missing, replaced, or new next to a non-empty archive: no mail is taken (one line)."""


def db_id_file(cfg: Config) -> Path:
    """The sidecar that remembers which database this state directory belongs with."""
    return cfg.db_path.with_name(cfg.db_path.name + ".id")


def _read_id_file(cfg: Config) -> str | None:
    try:
        return db_id_file(cfg).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _write_id_file(cfg: Config, db_id: str) -> None:
    path = db_id_file(cfg)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(db_id + "\n", encoding="ascii")
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not write %s (%s): the database is still checked, by its own identity", path, err)
        tmp.unlink(missing_ok=True)


def _archive_has_mail(cfg: Config) -> bool:
    return next(iter((cfg.state_dir / "archive").glob("*/*.eml")), None) is not None


def _refusal(cfg: Config, what: str) -> DatabaseProblem:
    return DatabaseProblem(
        f"{what}，而归档 {cfg.state_dir / 'archive'} 中已有邮件：为免把收件箱当作新邮件重新登记、重复发送回执，mailbot 拒绝启动。"
        f"请运行 mailbot reindex 从归档重建数据库（历史回复标记为已发送，不会重发），再用生成的文件替换 {cfg.db_path}；"
        "或从 mailbot backup 的备份恢复"
    )


def establish_database(cfg: Config) -> str:
    """Check, before any mail is taken, that the database is the one this state directory belongs with.

    Accepted: the database whose identity the sidecar names; a database that holds messages
    (a rebuilt ``reindex`` or a restored backup, or the first start of this version): it is
    given an identity if it has none and the sidecar follows it; any database while the archive
    is empty (a new installation). Refused (DatabaseProblem, one line): a missing or empty
    database next to a non-empty archive. Returns the identity.
    """
    path = cfg.db_path
    known = _read_id_file(cfg)
    if not path.exists():
        if _archive_has_mail(cfg):
            raise _refusal(cfg, f"数据库 {path} 不存在（被删除或移走）")
        db = store.open_db(path)  # a new installation: nothing was ever received
    else:
        db = store.open_existing_db(path)
    try:
        current = store.database_id(db)
        if current and known in (None, current):
            if known is None:
                _write_id_file(cfg, current)
            return current
        count = store.message_count(db)
        if count == 0 and _archive_has_mail(cfg):
            raise _refusal(cfg, f"数据库 {path} 是新建的空数据库" + ("（不是本状态目录原来的数据库）" if known else ""))
        current = current or store.assign_database_id(db)
        if known and known != current:
            log.warning(
                "database %s is not the one this state directory last used (%s, now %s; %d messages): "
                "taken as a rebuilt (reindex) or restored database", path, known, current, count,
            )
        _write_id_file(cfg, current)
        return current
    finally:
        db.close()


def open_watched(cfg: Config, db_id: str | None):
    """Open the daemon's database, checking it is still the one it started with (never creating it)."""
    if db_id is None:
        return store.open_db(cfg.db_path)
    try:
        db = store.open_existing_db(cfg.db_path)
    except store.MissingDatabase:
        raise DatabaseProblem(
            f"数据库 {cfg.db_path} 不见了（被删除或移走）：已停止收信、发信和提醒，以免把收件箱当作新邮件重新登记、重复发送回执。"
            "请停止服务，从 mailbot backup 的备份恢复，或运行 mailbot reindex 从归档重建并替换它，然后重新启动服务"
        ) from None
    try:
        current = store.database_id(db)
    except BaseException:
        db.close()
        raise
    if current != db_id:
        db.close()
        raise DatabaseProblem(
            f"数据库 {cfg.db_path} 在服务运行期间被替换（原标识 {db_id}，现在 {current or '无'}）：已停止收信、发信和提醒。"
            "若这是 mailbot reindex 重建或从备份恢复的数据库，请重新启动服务；否则请放回原来的数据库"
        )
    return db


# --- alerts that cannot wait for the outbox ------------------------------------------------------


def _alert_record_file(cfg: Config) -> Path:
    return cfg.state_dir / "alerts-mailed.json"


def _alert_recorded(cfg: Config, key: str) -> bool:
    try:
        return key in json.loads(_alert_record_file(cfg).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _record_alert(cfg: Config, key: str) -> bool:
    path = _alert_record_file(cfg)
    try:
        seen = json.loads(path.read_text(encoding="utf-8"))
        seen = seen if isinstance(seen, dict) else {}
    except (OSError, ValueError):
        seen = {}
    seen = {k: v for k, v in seen.items() if isinstance(v, str) and v >= store.iso(store.now_utc() - dt.timedelta(days=3))}
    seen[key] = store.iso(store.now_utc())
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(seen, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


def _direct_alert(cfg: Config, key: str, subject: str, text: str, now: dt.datetime, *, need_record: bool = False) -> bool:
    """Mail the coordinator now, without the outbox (its database is missing, replaced or cannot be
    written). Once per key (a key carries the day): remembered in this process and, when the state
    directory takes it, in state/alerts-mailed.json. Quiet hours hold it (a later cycle sends it).
    ``need_record``: send only if that record can be written (a start-up refusal repeats every
    restart). True when it was sent now or before."""
    if not cfg.coordinator_emails:
        return False
    with _direct_lock:  # the jobs run in parallel threads and meet the same fault at once
        return _direct_alert_locked(cfg, key, subject, text, now, need_record)


_direct_lock = threading.RLock()


def _direct_alert_locked(cfg: Config, key: str, subject: str, text: str, now: dt.datetime, need_record: bool) -> bool:
    if _remembered(cfg, key) or _alert_recorded(cfg, key):
        _remember(cfg, key)
        return True
    from .notices import quiet

    if quiet(cfg, now):
        return False
    if need_record and not _record_alert(cfg, key):
        log.warning("not mailing the alert: %s cannot be written, and every restart would mail it again", _alert_record_file(cfg))
        return False
    try:
        _send_direct(cfg, key, subject, text)
    except (MailbotError, smtplib.SMTPException, OSError) as err:
        log.error("could not mail the alert to %s either (%s): it is retried next cycle", ",".join(cfg.coordinator_emails), err)
        if need_record:
            _forget_alert(cfg, key)
        return False
    _remember(cfg, key)
    if not need_record:
        _record_alert(cfg, key)
    log.info("alert mailed directly to %s: %s", ",".join(cfg.coordinator_emails), subject)
    return True


def _forget_alert(cfg: Config, key: str) -> None:
    path = _alert_record_file(cfg)
    try:
        seen = json.loads(path.read_text(encoding="utf-8"))
        seen.pop(key, None)
        path.write_text(json.dumps(seen, ensure_ascii=False), encoding="utf-8")
    except (OSError, ValueError, AttributeError):
        pass


def _send_direct(cfg: Config, key: str, subject: str, text: str) -> None:
    """One alert over SMTP, built like an outbox row (same template, headers, a stable Message-ID)."""
    from .outbox import _close, _connect_smtp, build_email, make_msgid
    from .templating import render

    ctx = {"text": text, "coordinator": True, "office": cfg.bot.get("office_name", "")}
    row = {
        "kind": "alert", "to_addrs": json.dumps(sorted(set(cfg.coordinator_emails)), ensure_ascii=False), "cc_addrs": "[]",
        "subject": subject, "body_text": render("mail/alert.txt.j2", **ctx), "body_html": render("mail/alert.html.j2", **ctx),
        "msgid": make_msgid(cfg, key, "direct"), "in_reply_to": None, "references": None, "attachments": "[]",
    }
    message = build_email(cfg, row)
    conn = _connect_smtp(cfg)
    try:
        conn.send_message(message, from_addr=cfg.smtp.from_addr or cfg.smtp.user, to_addrs=list(cfg.coordinator_emails))
    finally:
        _close(conn)


def _sweep_conversions(cfg: Config) -> None:
    """LibreOffice work directories (a profile and a copy of an attachment) left by a killed process."""
    try:
        from .convert import sweep_conversion_temp

        if n := sweep_conversion_temp(older_than=float(cfg.bot.get("conversion_timeout_seconds", 120))):
            log.info("removed %d LibreOffice work directories left by a killed conversion", n)
    except Exception as err:  # noqa: BLE001 - housekeeping never stops the daemon
        log.warning("could not sweep old LibreOffice work directories: %s", err)
