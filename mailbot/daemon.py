"""The daemon: apscheduler jobs for polling and outbox delivery; one cycle for `poll --once`.

Failures are isolated and visible: a login refusal is a configuration error
(one clear log line, the coordinator told once, no hammering); a network error
backs off and, when it lasts, is reported once per outage (QUIRKS 3, 8).
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import signal
import sqlite3
import threading
from dataclasses import dataclass, field

from . import store
from .config import Config
from .errors import ConfigError
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
        log.error("database error while recording mail (nothing lost; retried next poll): %s", err)
        report.poll_error = f"数据库错误（邮件未丢失，下次收信时重试）：{err}"
        _local_trouble(cfg, db, now, report.poll_error)
    except Exception as err:  # noqa: BLE001 - network errors surface as many types
        if isinstance(err, OSError) and (err.errno in STATE_ERRNOS or err.filename is not None):
            # A file operation failed (sockets carry no file name): our disk, not the mailbox.
            log.error("cannot write to the state directory %s (nothing lost; retried next poll): %s", cfg.state_dir, err)
            report.poll_error = f"无法写入状态目录 {cfg.state_dir}（{err.strerror}）：请清理磁盘或检查权限；邮件未丢失，恢复后自动补收"
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


STATE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _local_trouble(cfg: Config, db, now: dt.datetime, message: str, key: str = "local") -> None:
    """Tell the coordinator once a day that something here (disk, database, a folder) needs a person."""
    try:
        day = now.astimezone(cfg.tz).date().isoformat()
        subject = "【台账机器人】邮箱文件夹无法读取，需要处理" if key == "folder" else "【台账机器人】服务器存储故障，需要处理"
        _alert(cfg, db, f"alert:{key}:{day}", subject, message)
    except (sqlite3.Error, OSError) as err:
        log.error("could not queue the alert either: %s", err)


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

    ``retry_now``: ignore an IMAP back-off (a person asked for this cycle)."""
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

    if swept := sweep_archive_temp(cfg.state_dir):
        log.info("removed %d temporary files left in the archive by an earlier crash", swept)
    if clear_backoff(cfg):
        log.info("an earlier mailbox failure had set a back-off: cleared at start-up, polling now")
    stop = threading.Event()
    scheduler = BlockingScheduler(timezone=cfg.tz, job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 300})

    def poll_job() -> None:
        db = store.open_db(cfg.db_path)
        try:
            report = poll_mailbox(cfg, db, stop)
            if report.poll and (report.poll.fetched or report.poll.rescans):
                log.info("poll: %s", report.summary())
            elif report.skipped_poll:
                log.info("poll skipped: %s", report.skipped_poll)
        finally:
            db.close()

    def outbox_job() -> None:
        stats = deliver_job(cfg, stop)
        if stats.sent or stats.failed or stats.retried:
            log.info("outbox: sent %d, retry %d, failed %d, suppressed %d", stats.sent, stats.retried, stats.failed, stats.suppressed)

    now = dt.datetime.now(cfg.tz)
    scheduler.add_job(poll_job, "interval", seconds=cfg.bot["poll_interval_seconds"], id="poll", next_run_time=now)
    scheduler.add_job(outbox_job, "interval", seconds=cfg.bot["outbox_interval_seconds"], id="outbox", next_run_time=now + dt.timedelta(seconds=2))
    scheduler.add_job(
        notices_job, "interval", args=(cfg, stop), seconds=cfg.notices["interval_seconds"], id="notices",
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
    from .convert import configure_warm, shutdown_warm

    configure_warm(cfg)  # the daemon keeps LibreOffice warm; one-shot commands and parse workers convert cold
    try:
        scheduler.start()
    finally:
        shutdown_warm()
    log.info("mailbot stopped")


def notices_job(cfg: Config, stop: threading.Event | None = None, now: dt.datetime | None = None) -> int:
    """Queue the reminders, overdue notices and digests due now; delivery follows in the outbox job."""
    from .notices import queue_notices

    db = store.open_db(cfg.db_path)
    try:
        queued = queue_notices(cfg, db, now or store.now_utc())
        if queued:
            log.info("notices: queued %s", ", ".join(n.dedupe_key for n in queued))
        return len(queued)
    finally:
        db.close()
