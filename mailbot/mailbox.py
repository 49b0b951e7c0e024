"""IMAP polling (imap-tools): incremental by UID, read-only, cursor advanced only after commit.

Works against NetEase 163 (needs the ID command before SELECT; no IDLE, MOVE or
UNSELECT; STATUS without UIDNEXT) and any standard server (QUIRKS 1–8).
"""

from __future__ import annotations

import datetime as dt
import imaplib
import logging
import os
import re
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import imap_tools
from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError

from . import __version__, parse_worker, store
from .config import Config, ServerConfig
from .errors import MailbotError

log = logging.getLogger(__name__)


class MailboxError(MailbotError):
    """The mailbox could not be reached or used (network, server, protocol)."""


class FolderError(MailboxError):
    """A configured folder cannot be opened (wrong name, deleted)."""


class LoginRefused(MailboxError):
    """The server said NO to our credentials: a configuration error, not a network blip."""


def login_hint(host: str) -> str:
    host = host.lower()
    if any(d in host for d in ("163.com", "126.com", "yeah.net", "qq.com", "188.com", "sina", "sohu")):
        return "请在邮箱网页版「设置 → POP3/SMTP/IMAP」中开启 IMAP/SMTP 服务，并使用授权码（不是网页登录密码）"
    return "请检查用户名和密码（密码放在 password_env 指定的环境变量中）"


def tls_context(server: ServerConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if server.host in ("127.0.0.1", "localhost", "::1"):
        # Loopback test and demo servers use self-signed certificates.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class Fetched:
    folder: str
    uidvalidity: int
    uid: int
    raw: bytes
    internaldate: dt.datetime | None


@dataclass
class PollStats:
    fetched: int = 0
    skipped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    rescans: list[str] = field(default_factory=list)


_INTERNALDATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_UID_RE = re.compile(rb"UID (\d+)")
_SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")


class Mailbox:
    """One IMAP session: connect, log in, send ID, then read folders by UID."""

    def __init__(self, server: ServerConfig, timeout: float = 60):
        self.server = server
        self.timeout = timeout
        self.box: imap_tools.BaseMailBox | None = None
        self.capabilities: set[str] = set()

    # -- session -----------------------------------------------------------------------------
    def connect(self) -> "Mailbox":
        s = self.server
        try:
            if s.security == "ssl":
                box = MailBox(s.host, s.port, timeout=self.timeout, ssl_context=tls_context(s))
            elif s.security == "starttls":
                box = MailBoxStartTls(s.host, s.port, timeout=self.timeout, ssl_context=tls_context(s))
            else:
                box = MailBoxUnencrypted(s.host, s.port, timeout=self.timeout)
        except (OSError, imaplib.IMAP4.error, imap_tools.errors.ImapToolsError) as err:
            raise MailboxError(f"无法连接 IMAP 服务器 {s.host}:{s.port}（{s.security}）：{_short(err)}") from err
        try:
            box.login(s.user, s.password(), initial_folder=None)
        except MailboxLoginError:
            _safe_logout(box)
            raise LoginRefused(f"IMAP 登录 {s.host} 被拒绝（用户 {s.user}）：{login_hint(s.host)}") from None
        except (OSError, imaplib.IMAP4.error) as err:
            _safe_logout(box)
            raise MailboxError(f"IMAP 登录 {s.host} 时连接中断：{_short(err)}") from err
        self.box = box
        self.capabilities = self._capabilities()
        if "ID" in self.capabilities:
            # 163 refuses SELECT ("Unsafe Login") until the client identifies itself (RFC 2971).
            ident = f'("name" "mailbot" "version" "{__version__}" "vendor" "mailbot" "support-email" "{s.user or "mailbot"}")'
            # imaplib registers an unknown command for the state of its first use only.
            imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
            try:
                box.client.xatom("ID", ident)
            except (imaplib.IMAP4.error, OSError) as err:
                log.warning("IMAP ID command failed: %s", err)
        return self

    def _capabilities(self) -> set[str]:
        try:
            typ, data = self.box.client.capability()
            if typ == "OK" and data and data[0]:
                return {c.upper() for c in data[-1].decode("ascii", "replace").split()}
        except (imaplib.IMAP4.error, OSError):
            pass
        return {c.upper() for c in getattr(self.box.client, "capabilities", ())}

    def close(self) -> None:
        if self.box is not None:
            _safe_logout(self.box)
            self.box = None

    def __enter__(self) -> "Mailbox":
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- folders -----------------------------------------------------------------------------
    def resolve_folders(self, names: tuple[str, ...]) -> list[str]:
        """Configured folder names; "\\Junk", "\\Sent" … are looked up by special-use flag."""
        wanted = []
        listing = None
        for name in names:
            if not name.startswith("\\"):
                wanted.append(name)
                continue
            if listing is None:
                listing = self.box.folder.list()
            match = [f.name for f in listing if name.lower() in (flag.lower() for flag in f.flags)]
            if match:
                wanted.append(match[0])
            else:
                log.info("no folder with special-use flag %s on this server", name)
        return wanted

    def select(self, folder: str, readonly: bool = True) -> int:
        """Select a folder; return its UIDVALIDITY."""
        try:
            self.box.folder.set(folder, readonly=readonly)
        except imap_tools.errors.MailboxFolderSelectError as err:
            raise FolderError(f"无法打开邮箱文件夹「{folder}」：请检查 [imap] folders 中的名称（{_short(err)}）") from err
        values = self.box.client.untagged_responses.get("UIDVALIDITY") or []
        try:
            return int(values[-1])
        except (IndexError, ValueError, TypeError):
            status = self.box.folder.status(folder, ["UIDVALIDITY"])
            return int(status.get("UIDVALIDITY", 0))

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs greater than last_uid (``n:*`` also returns the highest UID when it is below n)."""
        typ, data = self.box.client.uid("SEARCH", f"UID {last_uid + 1}:*")
        if typ != "OK":
            raise MailboxError(f"IMAP UID SEARCH 失败：{data!r}")
        uids = sorted({int(x) for chunk in data if chunk for x in chunk.split()})
        return [u for u in uids if u > last_uid]

    def sizes(self, uids: list[int]) -> dict[int, int]:
        """RFC822.SIZE of each UID (one round trip), to bound how much one batch fetch reads."""
        if not uids:
            return {}
        typ, data = self.box.client.uid("FETCH", ",".join(map(str, uids)), "(UID RFC822.SIZE)")
        if typ != "OK":
            raise MailboxError(f"IMAP FETCH RFC822.SIZE 失败：{data!r}")
        out = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if isinstance(line, bytes):
                m_uid, m_size = _UID_RE.search(line), _SIZE_RE.search(line)
                if m_uid and m_size:
                    out[int(m_uid.group(1))] = int(m_size.group(1))
        return out

    def fetch_many(self, uids: list[int]) -> dict[int, tuple[bytes, dt.datetime | None]]:
        """Several messages in one round trip: UID → (exact raw bytes, INTERNALDATE); expunged ones absent."""
        if not uids:
            return {}
        typ, data = self.box.client.uid("FETCH", ",".join(map(str, uids)), "(UID INTERNALDATE BODY.PEEK[])")
        if typ != "OK":
            raise MailboxError(f"IMAP FETCH 失败：{data!r}")
        out = {}
        for item in data:
            if isinstance(item, tuple) and len(item) >= 2:
                meta, raw = item[0], item[1]
                m_uid, m_date = _UID_RE.search(meta), _INTERNALDATE_RE.search(meta)
                if m_uid:
                    out[int(m_uid.group(1))] = (raw, _internaldate(m_date.group(1).decode()) if m_date else None)
        return out

    def fetch_to_file(self, uid: int, fh, chunk: int = 4 * 1024 * 1024) -> tuple[bytes, dt.datetime | None] | None:
        """A message too large to hold in memory: its header and INTERNALDATE, and its exact
        bytes streamed into ``fh`` by partial fetches (BODY.PEEK[]<offset.chunk>). None if expunged."""
        # At most 256 KB of header: a message with no body is all header.
        typ, data = self.box.client.uid("FETCH", str(uid), "(UID INTERNALDATE BODY.PEEK[HEADER]<0.262144>)")
        if typ != "OK":
            raise MailboxError(f"IMAP FETCH 失败：{data!r}")
        got = next((item for item in data if isinstance(item, tuple) and len(item) >= 2), None)
        if got is None:
            return None
        m_date = _INTERNALDATE_RE.search(got[0])
        header, when = got[1], _internaldate(m_date.group(1).decode()) if m_date else None
        offset = 0
        while True:
            typ, data = self.box.client.uid("FETCH", str(uid), f"(BODY.PEEK[]<{offset}.{chunk}>)")
            if typ != "OK":
                raise MailboxError(f"IMAP FETCH 失败：{data!r}")
            part = next((item[1] for item in data if isinstance(item, tuple) and len(item) >= 2), b"")
            fh.write(part)
            offset += len(part)
            if len(part) < chunk:
                return header, when

    def post_action(self, folder: str, uid: int, action: str) -> None:
        """Optional, after commit: "flag" (\\Flagged), "seen", or "move:<folder>" (COPY, never delete)."""
        if not action or action == "none":
            return
        client = self.box.client
        if action == "flag":
            client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Flagged)")
        elif action == "seen":
            client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Seen)")
        elif action.startswith("copy:"):
            # COPY only: mail is never deleted, so a server without MOVE loses nothing (QUIRKS 2).
            self.box.copy([str(uid)], action.partition(":")[2])

    def append(self, folder: str, raw: bytes, flags: tuple[str, ...] = ("\\Seen",)) -> None:
        self.box.append(raw, folder, flag_set=list(flags))


def _internaldate(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def _short(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    text = re.sub(r"b(['\"])(.*?)\1", lambda m: _unescape(m.group(2)), text)  # server bytes, shown as text
    return text.splitlines()[0][:200]


def _unescape(text: str) -> str:
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
    except (UnicodeError, ValueError):
        return text


def _safe_logout(box) -> None:
    try:
        box.logout()
    except Exception:  # noqa: BLE001 - the connection may already be gone
        try:
            box.client.shutdown()
        except Exception:  # noqa: BLE001
            pass


# --- the poll cycle -------------------------------------------------------------------------------


def cursor(db, folder: str) -> tuple[int | None, int]:
    rows = list(db.query("SELECT uidvalidity, last_uid FROM mailbox_state WHERE folder = ?", [folder]))
    return (rows[0]["uidvalidity"], rows[0]["last_uid"]) if rows else (None, 0)


def advance_cursor(db, folder: str, uidvalidity: int, uid: int) -> None:
    with store.write_transaction(db):
        db.execute(
            "INSERT INTO mailbox_state (folder, uidvalidity, last_uid, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (folder) "
            "DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, updated_at = excluded.updated_at",
            [folder, uidvalidity, uid, store.iso(store.now_utc())],
        )


def already_handled(db, folder: str, uidvalidity: int, uid: int) -> bool:
    return bool(
        list(db.query("SELECT 1 FROM messages WHERE folder = ? AND uidvalidity = ? AND uid = ? LIMIT 1", [folder, uidvalidity, uid]))
    )


PIPELINE_WINDOW = 8  # messages fetched and being prepared ahead of the one being committed
CURSOR_EVERY = 20  # commits between two durable cursor updates (a lagging cursor is harmless)
FETCH_BATCH = 20  # messages per UID FETCH round trip …
FETCH_BATCH_BYTES = 8 * 1024 * 1024  # … and at most this much mail in memory per batch


def _batches(mailbox: Mailbox, uids: list[int], max_bytes: int):
    """(UIDs, oversize UIDs) in fetch batches bounded by count and by total size (sizes asked
    500 at a time). A message over ``max_bytes`` comes alone and is never loaded whole."""
    for start in range(0, len(uids), 500):
        chunk = uids[start:start + 500]
        sizes = mailbox.sizes(chunk)
        batch, total = [], 0
        for uid in chunk:
            size = sizes.get(uid, 0)
            if size > max_bytes:
                if batch:
                    yield batch, set()
                    batch, total = [], 0
                yield [uid], {uid}
                continue
            if batch and (len(batch) >= FETCH_BATCH or total + size > FETCH_BATCH_BYTES):
                yield batch, set()
                batch, total = [], 0
            batch.append(uid)
            total += size
        if batch:
            yield batch, set()


# Before issue 11 only a backlog of this many messages went to worker processes (fewer were
# parsed in threads, without limits). Every message goes to a worker now, and a folder's
# backlog only sizes the pool (one worker per new message, up to one per core). Kept for
# callers that still set it.
PROCESS_BACKLOG = 40


class Preparers:
    """Where `intake.prepare` (archive + decode + parse, no database) runs while this thread commits.

    Every message is analysed in a worker process (`parse_worker.WorkerPool`), one per
    core at most, started when the first new message arrives and kept for the whole
    poll: parsing runs in parallel with fetching and committing, and under the limits
    of DESIGN invariant 8. A message whose worker passes ``[bot] parse_timeout_seconds``
    is killed with its worker; one that kills its worker twice, or hits ``[bot]
    parse_memory_mb``, is given up: all three end as a recorded `quarantined` status
    with reason code `timeout` or `too_complex` (`intake.prepare_failed`, which
    archives first, again, idempotently), and the messages behind it go on.

    ``[bot] parse_processes = 0`` parses in this process instead (two threads), without
    those limits: for debugging only.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        setting = cfg.bot.get("parse_processes", "auto")
        self.processes = min(os.cpu_count() or 1, 4) if setting == "auto" else int(setting)
        self.threads: ThreadPoolExecutor | None = None
        self.pool: parse_worker.WorkerPool | None = None
        self.timeout, self.memory_mb = parse_worker.limits(cfg)
        if self.processes <= 0:
            log.warning("[bot] parse_processes = 0: messages are parsed in this process, without the time and memory limits")
            self.threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare")

    def submit(self, raw: bytes, kwargs: dict, backlog: int = 1) -> Future:
        from . import intake

        if self.threads is not None:
            return self.threads.submit(intake.prepare, self.cfg, raw, **kwargs)
        size = min(self.processes, max(1, backlog))
        if self.pool is None:
            log.info("%d new messages: parsing them in %d worker processes (%.0f s, %d MB each at most)", backlog, size, self.timeout, self.memory_mb)
            self.pool = parse_worker.WorkerPool(self.cfg, size, timeout=self.timeout, memory_mb=self.memory_mb)
        elif size > self.pool.size:  # a later folder with a larger backlog
            self.pool.size = size
        return self.pool.submit(raw, kwargs)

    def result(self, future: Future, raw: bytes, kwargs: dict):
        """The prepared message; every failure of its analysis ends as a recorded status."""
        from . import intake

        try:
            return future.result()
        except parse_worker.AnalysisFailed as failed:
            log.warning("message UID %s: %s (%s): quarantined", kwargs.get("uid"), failed.what, failed.code)
            return intake.prepare_failed(self.cfg, raw, failed.what, code=failed.code, **kwargs)
        except parse_worker.PoolUnavailable as err:
            if self.threads is None:
                log.error("no parse worker process can be started (%s): parsing in this process, without limits", err)
                self.threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare")
            return intake.prepare(self.cfg, raw, **kwargs)
        except (BrokenProcessPool, CancelledError):  # a future from elsewhere, cancelled before it ran: prepare it now
            return self.result(self.submit(raw, kwargs), raw, kwargs)

    def close(self) -> None:
        if self.threads is not None:
            self.threads.shutdown(wait=True, cancel_futures=True)
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def poll_folders(
    cfg: Config, db, mailbox: Mailbox, stop: threading.Event | None = None, progress: Callable[[int, int], None] | None = None,
) -> PollStats:
    """Fetch and ingest every new message in every configured folder; the cursor follows each commit.

    Fetching stays on this thread (one IMAP connection); archiving and parsing of the
    next few messages run on `Preparers` (worker processes, each message under a
    deadline and a memory cap) while this thread commits, strictly in UID order, so the
    cursor never passes a message that is not recorded, and a message whose analysis
    fails or overruns is recorded with that reason rather than holding up the others. ``progress(done, total)``, when given, is called after each
    message of a folder is settled (total: the folder's new UIDs), e.g. to show a first
    backfill's progress on a terminal.
    """
    stats = PollStats()
    folders = mailbox.resolve_folders(cfg.imap.folders)
    workers = Preparers(cfg)
    try:
        for folder in folders:
            try:
                _poll_folder(cfg, db, mailbox, folder, workers, stats, stop, progress)
            except FolderError as err:  # one missing folder must not stop the others (INBOX above all)
                log.error("%s", err)
                stats.errors.append(str(err))
            if stop is not None and stop.is_set():
                break
    finally:
        workers.close()
    if stats.errors and len(stats.errors) == len(folders):
        raise MailboxError("；".join(stats.errors))
    return stats


def _poll_folder(cfg: Config, db, mailbox: Mailbox, folder: str, workers: Preparers, stats: PollStats, stop, progress=None) -> None:
    from . import intake

    action = cfg.imap_post_action
    uidvalidity = mailbox.select(folder, readonly=action in ("", "none"))
    known_validity, last_uid = cursor(db, folder)
    if known_validity != uidvalidity:
        if known_validity is not None:
            # UIDs were renumbered: rescan the folder; Message-ID and content hash dedupe (QUIRKS 6).
            log.warning("UIDVALIDITY of %s changed (%s → %s): rescanning the folder", folder, known_validity, uidvalidity)
            stats.rescans.append(folder)
        last_uid = 0
        advance_cursor(db, folder, uidvalidity, 0)
    pending: deque = deque()  # (uid, future or None, raw, prepare kwargs), in UID order

    committing = [False]
    uncursored = [0, None]  # messages committed since the cursor last moved, and the last such UID
    settled = [0, 0]  # messages settled in this folder, of how many new UIDs

    def settle(keep: int) -> None:
        while len(pending) > keep:
            committing[0] = True
            uid, future, raw, kwargs = pending.popleft()
            if future is not None:
                result = intake.commit(cfg, db, workers.result(future, raw, kwargs))
                stats.statuses[result.status] = stats.statuses.get(result.status, 0) + 1
            # The cursor never passes an uncommitted message; it may lag behind committed ones
            # (those are recognised by folder+UIDVALIDITY+UID and skipped), which saves a
            # durable write per message.
            uncursored[0] += 1
            uncursored[1] = uid
            if uncursored[0] >= CURSOR_EVERY or keep == 0 and not pending:
                advance_cursor(db, folder, uidvalidity, uid)
                uncursored[0] = 0
            if future is not None and action not in ("", "none"):
                try:
                    mailbox.post_action(folder, uid, action)
                except (imaplib.IMAP4.error, OSError, imap_tools.errors.ImapToolsError) as err:
                    log.warning("post-action %s on %s/%s failed (the message is recorded): %s", action, folder, uid, err)
            committing[0] = False
            settled[0] += 1
            if progress is not None:
                progress(settled[0], settled[1])

    try:
        uids = mailbox.uids_after(last_uid)
        backlog = settled[1] = len(uids)
        for batch, oversize in _batches(mailbox, uids, cfg.bot["max_message_bytes"]):
            if stop is not None and stop.is_set():
                break
            handled = {uid for uid in batch if already_handled(db, folder, uidvalidity, uid)}
            if oversize - handled:
                uid = batch[0]
                settle(0)  # in UID order: what is ahead of it is recorded first
                streamed = _stream_oversize(cfg, mailbox, folder, uidvalidity, uid)
                if streamed is not None:  # its header, analysed in a worker like any message
                    stats.fetched += 1
                    header, kwargs = streamed
                    pending.append((uid, workers.submit(header, kwargs, backlog), header, kwargs))
                else:
                    pending.append((uid, None, None, None))
                settle(0)
                continue
            fetched = mailbox.fetch_many([uid for uid in batch if uid not in handled])
            for uid in batch:
                got = fetched.pop(uid, None)
                if uid in handled or got is None:  # recorded before a crash, or expunged meanwhile
                    stats.skipped += uid in handled
                    pending.append((uid, None, None, None))
                else:
                    raw, internaldate = got
                    stats.fetched += 1
                    kwargs = dict(
                        received_at=internaldate, source="imap", folder=folder, uidvalidity=uidvalidity, uid=uid,
                        analyse=not intake.already_recorded(db, raw),
                    )
                    pending.append((uid, workers.submit(raw, kwargs, backlog), raw, kwargs))
                settle(PIPELINE_WINDOW)
            del fetched
    except BaseException:
        if not committing[0]:
            # The mailbox failed (not the database): record what was already fetched, in order.
            try:
                settle(0)
            except Exception:  # noqa: BLE001 - the original error is the one to report
                log.exception("could not record the messages fetched before the mailbox failed")
        raise
    else:
        settle(0)  # what is already fetched and archived is recorded, also when stopping
    finally:
        for _uid, future, _raw, _kwargs in pending:  # an error above: drop the rest; their UIDs are fetched again next time
            if future is not None:
                future.cancel()


def _stream_oversize(cfg: Config, mailbox: Mailbox, folder: str, uidvalidity: int, uid: int) -> tuple[bytes, dict] | None:
    """A message over [bot] max_message_bytes: streamed into the archive in chunks; (its header,
    the prepare arguments that say it is archived already), to be refused from the header alone
    (it is never held in memory, nor parsed). None if it was expunged meanwhile."""
    from . import intake

    fh, tmp = intake.archive_temp(cfg.state_dir)
    try:
        with fh:
            got = mailbox.fetch_to_file(uid, fh)
        if got is None:  # expunged meanwhile
            tmp.unlink(missing_ok=True)
            return None
        header, internaldate = got
        archived = intake.archive_from_file(cfg.state_dir, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.warning("message UID %s in %s is %d bytes, over the limit: archived without loading it", uid, folder, archived[2])
    return header, dict(received_at=internaldate, source="imap", folder=folder, uidvalidity=uidvalidity, uid=uid, archived=archived)


def is_connection_error(err: BaseException) -> bool:
    return isinstance(err, (OSError, socket.timeout, imaplib.IMAP4.abort, ssl.SSLError, EOFError))
