"""One message in, one recorded status out: archive, classify, identify, parse, store, queue the reply.

``ingest`` is the only way a message enters the state; ``mailbot ingest`` and the
daemon both call it. Order (DESIGN.md invariants 1, 2, 6): the raw bytes are
archived first; the documents are parsed outside any transaction; then the
message row, its report and progress rows and its reply are committed together.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import store
from .config import Config, Round
from .convert import NEEDS_CONVERSION, REFUSALS, ZipLimits
from .errors import MailbotError, ReportError
from .ledger import Unit
from .mime import DEFAULT_MAX_DECOMPRESSED, Extracted, FoundFile, Limits, clean_msgids, decode_header, extract_files, header, load_message, parse_address, parse_cost, raw_header
from .reports import ParsedReport, parse_document

if TYPE_CHECKING:  # prepare() runs in parse workers, which need neither SQLite nor the mail templates
    import sqlite_utils

log = logging.getLogger(__name__)

DOCUMENT_KINDS = {"docx", "doc", "wps", "odt", "rtf"}


@dataclass
class IngestResult:
    status: str
    unit: str | None = None
    round: str | None = None
    tasks: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    reason: str | None = None
    reason_code: str | None = None
    message_row: int | None = None
    verified: bool = False
    late: bool = False
    no_reply: str | None = None  # why the sender is not answered although the mail is recorded
    replaced: bool = False  # the unit had already reported in this round
    first_on_time: bool = False  # the unit's first report of this round came in time
    kept: list[int] = field(default_factory=list)  # blank this time, earlier text kept
    superseded: list[int] = field(default_factory=list)  # filled, but a report received later is on record
    foreign: list[int] = field(default_factory=list)  # filled, but the unit is not responsible: archived, not recorded
    held: list[int] = field(default_factory=list)  # unverified text kept in history: verified text is on record
    warnings: list[str] = field(default_factory=list)
    accepted_by: str | None = None  # a person assigned the unit (`mailbot accept`)
    round_basis: str | None = None  # why the mail counts for its round, when a reader could wonder

    def as_dict(self) -> dict:
        """The `mailbot ingest --json` contract (also `accept --json`, `reprocess --json`)."""
        return {
            "status": self.status,
            "unit": self.unit,
            "round": self.round,
            "tasks": self.tasks,
            "missing": self.missing,
            "reason": self.reason,
            "message": self.message_row,
        }


# --- archive --------------------------------------------------------------------------------


def _write_durably(target: Path, data: bytes) -> None:
    """Write via a temporary file, fsync, rename, fsync the directory: the file is whole or absent."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def archive(state_dir: Path, raw: bytes) -> tuple[str, Path]:
    """Write the raw message under state/archive/, named by its SHA-256; fsync'd before returning."""
    digest = hashlib.sha256(raw).hexdigest()
    target = state_dir / "archive" / digest[:2] / f"{digest}.eml"
    if not (target.exists() and target.stat().st_size == len(raw)):
        _write_durably(target, raw)
    return digest, target


def archive_temp(state_dir: Path):
    """An open temporary file in the archive, for a message streamed to disk (see archive_from_file)."""
    folder = state_dir / "archive"
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".eml")
    return os.fdopen(fd, "w+b"), Path(tmp)


def archive_from_file(state_dir: Path, tmp: Path) -> tuple[str, Path, int]:
    """Move a streamed message into the archive under its SHA-256 (hashed in blocks, fsync'd):
    (digest, path, size). Memory stays bounded whatever the size."""
    h, size = hashlib.sha256(), 0
    with open(tmp, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
        os.fsync(fh.fileno())
    digest = h.hexdigest()
    target = state_dir / "archive" / digest[:2] / f"{digest}.eml"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.stat().st_size == size:
        tmp.unlink()
    else:
        os.replace(tmp, target)
    _fsync_dir(target.parent)
    return digest, target, size


def archive_meta(archive_path: Path, meta: dict) -> None:
    """Beside the raw message, how it first arrived (received time, folder, UID): what `reindex` needs.

    Not fsync'd: it only orders a rebuild, which falls back to the headers without it.
    """
    side = archive_path.with_suffix(".json")
    if not side.exists():
        # A temporary name of its own: the same bytes may be prepared twice at once (a copy
        # right behind its original in the pipeline); the first sidecar to land stays.
        fd, tmp = tempfile.mkstemp(dir=side.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(meta, ensure_ascii=False))
            os.replace(tmp, side)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _filesystem_now(folder: Path, fallback: float) -> float:
    """The time as the file system stamps it (a network file system's clock, or ours): file ages are
    measured against it, not against the process clock."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".now-") as probe:
            return os.fstat(probe.fileno()).st_mtime
    except OSError:
        return fallback


def sweep_archive_temp(state_dir: Path, older_than: float = 3600) -> int:
    """Remove temporary files a killed process left in the archive (never a finished message)."""
    import time

    removed = 0
    archive_dir = state_dir / "archive"
    cutoff = _filesystem_now(archive_dir, time.time()) - older_than
    for tmp in [*archive_dir.glob(".tmp-*"), *archive_dir.glob("*/.tmp-*")]:  # streamed mail, then messages and sidecars
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def read_archive_meta(archive_path: Path) -> dict:
    try:
        return json.loads(archive_path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# --- header facts ---------------------------------------------------------------------------------


def received_time(msg, fallback: dt.datetime) -> dt.datetime:
    """Our server's time: the newest (topmost) Received: header, else Date:, else the fallback."""
    for value in msg.get_all("Received") or []:
        stamp = str(value).rpartition(";")[2].strip()
        parsed = _parse_date(stamp)
        if parsed:
            return parsed
        break
    return _parse_date(str(msg.get("Date") or "")) or fallback


def _parse_date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        parsed.astimezone(dt.timezone.utc)  # an absurd date or offset (year 9999, -2359) fails here, not later
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed if plausible_time(parsed) else None


EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)


def plausible_time(t: dt.datetime) -> bool:
    """A time a message can really have been received at: not before 1990, at most a day ahead of our
    clock (a sender's clock may lie; year 9999 overflows any local-time conversion)."""
    try:
        return EARLIEST <= t <= store.now_utc() + dt.timedelta(days=1)
    except (TypeError, OverflowError):
        return False


_AUTO_SUBJECT = re.compile(r"^\s*(自动回复|自動回覆|自动答复|自動回復|auto[- ]?reply|automatic reply|out of office|autoreply)\s*[:：]", re.I)
_BOUNCE_SUBJECT = re.compile(r"^\s*(undeliver|delivery status notification|mail delivery failed|returned mail|系统退信|退信)", re.I)


def automatic_reason(msg, from_addr: str, subject: str, body: str) -> str | None:
    """Why this message is an auto-reply or bounce we must not answer (RFC 3834, QUIRKS 19), or None."""
    auto = (msg.get("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return f"自动发送的邮件（Auto-Submitted: {auto}）"
    for name in ("X-Autoreply", "X-Autorespond"):
        if msg.get(name) is not None:
            return f"自动回复邮件（{name}）"
    if (msg.get("Precedence") or "").strip().lower() == "auto_reply":
        return "自动回复邮件（Precedence: auto_reply）"
    return_path = msg.get("Return-Path")
    if return_path is not None and str(return_path).strip() in ("<>", ""):
        return "退信或系统通知（Return-Path 为空）"
    local = from_addr.partition("@")[0]
    if local in ("mailer-daemon", "postmaster") or "mailer-daemon" in from_addr:
        return "退信（MAILER-DAEMON）"
    if msg.get_content_type() == "multipart/report":
        return "退信或回执（multipart/report）"
    if _AUTO_SUBJECT.search(subject):
        return "自动回复邮件（主题）"
    if _BOUNCE_SUBJECT.search(subject):
        return "退信（主题）"
    if body.lstrip().startswith("这是来自QQ邮箱的假期自动回复邮件"):
        return "QQ 邮箱假期自动回复"
    return None


_OUR_MSGID = re.compile(r"<mailbot\.[0-9a-f]{32}@")


def replies_to_us(msg) -> bool:
    """In-Reply-To or References names one of our Message-IDs (outbox.make_msgid): "收到，谢谢" to a receipt."""
    refs = " ".join(str(msg.get(h) or "")[:20000] for h in ("In-Reply-To", "References"))
    return bool(_OUR_MSGID.search(refs))


def no_reply_reason(msg) -> str | None:
    """Signals that say "do not answer" but not "this is not a report": the mail is recorded, unanswered."""
    precedence = (msg.get("Precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    if msg.get("List-Id") or msg.get("List-Unsubscribe"):
        return "邮件列表头"
    if msg.get("X-Auto-Response-Suppress") is not None:
        return "X-Auto-Response-Suppress"
    return None


_AR_COMMENT = re.compile(r"\([^()]{0,500}\)")
_AR_RESULT = re.compile(r"^\s*([a-z0-9_-]{1,20})\s*=\s*([a-z]{1,12})\b(.{0,1000})$", re.I | re.S)
_AR_PROP = re.compile(r"\b(header\.from|header\.d|header\.i|smtp\.mailfrom|smtp\.helo)\s*=\s*\"?([^\s;\"]{1,255})", re.I)
AUTH_METHODS = ("dmarc", "dkim", "spf")


def _ar_parse(value: str) -> tuple[str, list[tuple[str, str, dict]]]:
    """An Authentication-Results header (RFC 8601): (authserv-id, [(method, result, properties)])."""
    text = value[:8000]
    for _ in range(3):  # nested comments, a few levels
        text = _AR_COMMENT.sub(" ", text)
    parts = text.split(";")
    serv = parts[0].strip().split()[0].lower() if parts[0].strip() else ""
    results = []
    for part in parts[1:]:
        m = _AR_RESULT.match(part)
        if m:
            props = {k.lower(): v.lower() for k, v in _AR_PROP.findall(m.group(3))}
            results.append((m.group(1).lower(), m.group(2).lower(), props))
    return serv, results


def _aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment: the same domain, or one a subdomain of the other."""
    domain = domain.rpartition("@")[2].strip(".").lower()
    return bool(domain) and (domain == from_domain or domain.endswith("." + from_domain) or from_domain.endswith("." + domain))


def sender_authentication(msg, from_addr: str, authserv_id: str = "") -> tuple[str, str]:
    """What the receiving server says of the sender: ("pass"|"fail"|"none"|"absent", detail).

    Only Authentication-Results with the receiving server's authserv-id count (``authserv_id``,
    or that of the topmost header). Every such header is read and any spf/dkim/dmarc=fail fails;
    a pass counts from the topmost one only (a header lower down may be the sender's own) and must
    be aligned with the From domain. softfail, neutral, none: "none" (unverified, not verified).
    """
    headers = [decode_header(v) for v in (msg.get_all("Authentication-Results") or [])[:50]]
    if not headers:
        return "absent", ""
    parsed = [_ar_parse(h) for h in headers]
    serv = authserv_id.lower() or parsed[0][0]
    ours = [results for sid, results in parsed if sid == serv]
    if not ours:
        return "absent", ""
    failed = sorted({method for results in ours for method, result, _p in results if method in AUTH_METHODS and result == "fail"})
    if failed:
        return "fail", "、".join(failed)
    from_domain = from_addr.rpartition("@")[2].lower()
    for method, result, props in ours[0]:
        if result != "pass" or not from_domain:
            continue
        if method == "dmarc" and _aligned(props.get("header.from", from_domain), from_domain):
            return "pass", "dmarc"
        if method == "dkim" and _aligned(props.get("header.d") or props.get("header.i") or "", from_domain):
            return "pass", "dkim"
        if method == "spf" and _aligned(props.get("smtp.mailfrom") or "", from_domain):
            return "pass", "spf"
    return "none", "；".join(f"{m}={r}" for m, r, _p in ours[0] if m in AUTH_METHODS)[:200]


# --- the pipeline ---------------------------------------------------------------------------------


@dataclass
class Candidate:
    file: FoundFile
    report: ParsedReport | None = None
    error: ReportError | None = None


@dataclass
class Prepared:
    """A message archived and analysed, not yet recorded: the part of intake that needs no database."""

    digest: str
    archive_path: Path
    references: str  # the message's References header, cleaned, for the reply's threading
    message_id: str | None
    subject: str
    from_addr: str
    received: dt.datetime
    base: dict
    analysis: tuple | None = None  # (result, candidates, extracted, chosen); None when skipped


def prepare(
    cfg: Config,
    raw: bytes,
    *,
    received_at: dt.datetime | None = None,
    source: str = "file",
    folder: str | None = None,
    uidvalidity: int | None = None,
    uid: int | None = None,
    analyse: bool = True,
    archived: tuple[str, Path, int] | None = None,
    assign: Unit | None = None,
) -> Prepared:
    """Archive first, then decode and classify (parsing the documents). Safe to run in a worker
    thread or process: it touches no database and its result pickles.

    ``archived`` (digest, path, size): the message was too large to load and is already in
    the archive (`archive_from_file`); ``raw`` is then only its header.
    ``assign``: a person decided which unit sent it (`mailbot accept`).
    """
    digest, archive_path = archived[:2] if archived else archive(cfg.state_dir, raw)
    size = archived[2] if archived else len(raw)
    try:
        msg = load_message(raw, cfg.bot["max_message_bytes"])
        message_id = clean_msgids(header(msg, "Message-ID")).split(" ")[0] or None
        subject = header(msg, "Subject")
        from_name, from_addr = parse_address(raw_header(msg, "From"))
        received = received_at if received_at and plausible_time(received_at) else received_time(msg, store.now_utc())
        broken = None
    except Exception as err:  # noqa: BLE001 - archived already; it must still end with a status
        log.exception("cannot read the headers of archived message %s", digest)
        msg, message_id, subject, from_name, from_addr = load_message(b"\r\n"), None, "", "", ""
        received, broken = received_at or store.now_utc(), f"邮件头无法解析（{type(err).__name__}）"
    archive_meta(archive_path, {"received_at": store.iso(received), "source": source, "folder": folder, "uidvalidity": uidvalidity, "uid": uid})
    base = {
        "sha256": digest,
        "message_id": message_id,
        "source": source,
        "folder": folder,
        "uidvalidity": uidvalidity,
        "uid": uid,
        "received_at": store.iso(received),
        "from_addr": from_addr,
        "from_name": from_name,
        "subject": subject[:500],
        "archive_path": str(archive_path),
        "size": size,
    }
    prepared = Prepared(digest, archive_path, clean_msgids(header(msg, "References")), message_id, subject, from_addr, received, base)
    if broken:
        prepared.analysis = _internal_error(cfg, received, broken)
    elif analyse:
        try:
            prepared.analysis = _classify(cfg, msg, raw, from_addr, subject, received, size=size, assign=assign)
        except Exception as err:  # noqa: BLE001 - one broken message must never stall the queue
            log.exception("internal error while classifying message %s", message_id)
            prepared.analysis = _internal_error(cfg, received, f"处理时发生内部错误（{type(err).__name__}）")
    return prepared


def prepare_failed(cfg: Config, raw: bytes, what: str, *, code: str = "internal_error", **kwargs) -> Prepared:
    """A message whose analysis could not finish (its parse worker died on it, timed out, ran out of
    memory): archived and quarantined with ``code`` (internal_error, timeout, too_complex) and ``what``."""
    kwargs.pop("analyse", None)
    prepared = prepare(cfg, raw, analyse=False, **kwargs)
    prepared.analysis = _internal_error(cfg, prepared.received, what, code)
    return prepared


def _internal_error(cfg: Config, received: dt.datetime, what: str, code: str = "internal_error") -> tuple:
    result = IngestResult(
        "quarantined",
        round=cfg.round_for(received).name,
        reason=f"{what}，已隔离待人工处理；原始邮件已归档",
        reason_code=code,
    )
    return (result, [], None, None)


def commit(cfg: Config, db: sqlite_utils.Database, p: Prepared, *, again: int | None = None, reply_key: str = "") -> IngestResult:
    """Record a prepared message: its status, report, progress and reply in one transaction.

    The duplicate check runs inside the same write transaction, so two processes
    recording the same mail at once cannot both accept it. ``again``: the message is
    already on record under that number and is processed once more (accept, reprocess):
    its row is updated and what it recorded before is withdrawn first.
    """
    with store.write_transaction(db):
        original = None if again else store.find_duplicate(db, p.digest, p.message_id)
        if original is not None:
            result = IngestResult(
                "duplicate",
                unit=original["unit"],
                round=original["round"],
                reason=f"与第 {original['id']} 号邮件重复（相同的内容或 Message-ID），不再处理",
                reason_code="duplicate",
            )
            result.message_row = _record(db, p.base, result, duplicate_of=original["id"])
            if original["unit"] and original["round"] and cfg.roster.get(original["unit"]):
                result.missing = _missing(cfg, db, original["round"], original["unit"])
            return result
        if p.analysis is None:
            raise ValueError("commit() needs an analysed message unless it is a duplicate")
        result, _candidates, extracted, chosen = p.analysis
        files = extracted.files if extracted else []
        if again:
            _withdraw(db, again)
            _record(db, p.base, result, files=files, row_id=again)
            result.message_row = again
        else:
            result.message_row = _record(db, p.base, result, files=files)
        if result.status == "accepted" and chosen is not None:
            _store_report(cfg, db, result, chosen, p.received, p.message_id)
        elif result.unit and result.round and cfg.roster.get(result.unit):
            result.missing = _missing(cfg, db, result.round, result.unit)
        _queue_reply(cfg, db, result, p.references, p.message_id, p.from_addr, p.subject, p.received, extracted, chosen, reply_key)
    log.info("message %s from %s: %s %s %s", result.message_row, p.from_addr or "?", result.status, result.unit or "", result.reason or "")
    return result


def already_recorded(db: sqlite_utils.Database, raw: bytes) -> bool:
    """The same bytes are on record: skip parsing them again (commit still records the duplicate)."""
    return store.find_duplicate(db, hashlib.sha256(raw).hexdigest(), None) is not None


def ingest(
    cfg: Config,
    db: sqlite_utils.Database,
    raw: bytes,
    *,
    received_at: dt.datetime | None = None,
    source: str = "file",
    folder: str | None = None,
    uidvalidity: int | None = None,
    uid: int | None = None,
) -> IngestResult:
    """Process one raw message exactly once into a recorded status (see module docstring)."""
    prepared = prepare(
        cfg, raw, received_at=received_at, source=source, folder=folder, uidvalidity=uidvalidity, uid=uid,
        analyse=not already_recorded(db, raw),
    )
    return commit(cfg, db, prepared)


# --- a person's decisions on a recorded message ------------------------------------------------------

INBOX_KINDS = ("quarantined", "rejected", "unverified")


def _on_record(db, message: int) -> dict:
    rows = list(db.query("SELECT * FROM messages WHERE id = ?", [message]))
    if not rows:
        raise MailbotError(f"没有第 {message} 号邮件：用 mailbot inbox 查看待处理邮件及其编号")
    row = rows[0]
    if row["duplicate_of"]:
        raise MailbotError(f"第 {message} 号邮件是第 {row['duplicate_of']} 号邮件的重复：请处理第 {row['duplicate_of']} 号")
    return row


def _archived(cfg: Config, row: dict) -> tuple[bytes, dict]:
    path = Path(row["archive_path"] or "")
    try:
        raw = path.read_bytes()
    except OSError:
        raise MailbotError(f"第 {row['id']} 号邮件的归档文件 {path} 无法读取：请检查 {cfg.state_dir / 'archive'}") from None
    archived = None
    if len(raw) > cfg.bot["max_message_bytes"]:  # read its header only, as on arrival
        archived = (row["sha256"], path, len(raw))
        end = raw.find(b"\r\n\r\n")
        raw = raw[: end + 4] if end >= 0 else raw[:65536]
    return raw, {
        "received_at": dt.datetime.fromisoformat(row["received_at"]), "source": row["source"], "folder": row["folder"],
        "uidvalidity": row["uidvalidity"], "uid": row["uid"], "archived": archived,
    }


def _again(cfg: Config, db, row: dict, action: str, actor: str, reason: str | None, unit: Unit | None, *, audit: bool = True) -> IngestResult:
    """Process a recorded message once more (as ``unit`` when a person said so); with ``audit``, the action
    is an audit row and the reply gets a key of its own (a person asked, so it is sent even if one was)."""
    raw, where = _archived(cfg, row)
    prepared = prepare(cfg, raw, assign=unit, **where)
    with store.write_transaction(db):
        audit_id = None
        if audit:
            audit_id = store.audit(
                db, actor, action, unit=unit.name if unit else row["unit"], round_name=row["round"], message=row["id"], reason=reason,
                detail={"status_before": row["status"], "unit_before": row["unit"]},
            )
        if unit is not None:
            prepared.analysis[0].accepted_by = actor
        result = commit(cfg, db, prepared, again=row["id"], reply_key=f":by-{audit_id}" if audit_id else ":again")
        if audit_id:
            db.conn.execute("UPDATE audit SET round = ?, detail = ? WHERE id = ?", [
                result.round, store.dumps({"status_before": row["status"], "unit_before": row["unit"], "status": result.status}), audit_id,
            ])
    return result


def accepted_as(cfg: Config, db, message: int) -> Unit | None:
    """The unit a person last accepted this message as, if any (and still on the roster)."""
    found = db.conn.execute(
        "SELECT unit FROM audit WHERE message = ? AND action = 'accept' ORDER BY id DESC LIMIT 1", [message]
    ).fetchone()
    return cfg.roster.get(found[0]) if found else None


def accept_message(cfg: Config, db, message: int, unit: str, *, reason: str | None, actor: str) -> IngestResult:
    """`mailbot accept`: a person says which unit sent this message. It is processed again as that
    unit (its original received time), the decision is an audit row, and the receipt goes to the
    sender and the unit's registered addresses."""
    row = _on_record(db, message)
    target = cfg.roster.get(unit) or cfg.roster.match(unit)
    if target is None:
        raise MailbotError(f"名册中没有单位「{unit}」：请用单位全称或别名（见 {cfg.path} 的 [[units]]）")
    if row["status"] == "accepted" and row["verified"] and row["unit"] == target.name:
        raise MailbotError(f"第 {message} 号邮件已登记为「{target.name}」，无需认定")
    return _again(cfg, db, row, "accept", actor, reason, target)


def reprocess_message(cfg: Config, db, message: int, *, actor: str, reason: str | None = None) -> IngestResult:
    """`mailbot reprocess`: process a recorded message again with today's roster and config
    (a unit a person accepted it as still holds)."""
    row = _on_record(db, message)
    return _again(cfg, db, row, "reprocess", actor, reason, accepted_as(cfg, db, message))


def replay_decisions(cfg: Config, db, decisions: list[dict]) -> int:
    """`reindex`: carry the audit trail of the old database into a rebuilt one (messages matched by
    their bytes) and apply its accept decisions again, without new audit rows. Returns how many."""
    applied = 0
    for d in decisions:
        found = db.conn.execute("SELECT id FROM messages WHERE sha256 = ? AND duplicate_of IS NULL", [d["sha256"]]).fetchone() if d["sha256"] else None
        message = found[0] if found else None
        with store.write_transaction(db):
            store.insert(db, "audit", {k: d[k] for k in ("at", "actor", "action", "unit", "round", "reason", "detail")} | {"message": message})
        unit = cfg.roster.get(d["unit"]) if d["unit"] else None
        if d["action"] == "accept" and message and unit is not None:
            _again(cfg, db, _on_record(db, message), "accept", d["actor"], d["reason"], unit, audit=False)
            applied += 1
    return applied


def inbox(db, statuses: tuple[str, ...] = INBOX_KINDS) -> list[dict]:
    """Messages that need a person: quarantined, rejected (unless the unit has reported since) and
    accepted from an unverified sender; oldest first."""
    wanted = [s for s in statuses if s in INBOX_KINDS]
    clauses = []
    if "quarantined" in wanted:
        clauses.append("m.status = 'quarantined'")
    if "rejected" in wanted:
        clauses.append(
            "(m.status = 'rejected' AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.unit = m.unit AND r.round = m.round "
            "AND r.received_at >= m.received_at))"
        )
    if "unverified" in wanted:
        clauses.append("(m.status = 'accepted' AND m.verified = 0)")
    if not clauses:
        return []
    rows = db.query(
        "SELECT m.id, m.received_at, m.from_addr, m.subject, m.status, m.verified, m.reason, m.unit, m.round FROM messages m "
        f"WHERE m.duplicate_of IS NULL AND ({' OR '.join(clauses)}) ORDER BY m.received_at, m.id"
    )
    return [
        {
            "message": r["id"], "received_at": r["received_at"], "from_addr": r["from_addr"], "subject": r["subject"],
            "status": "unverified" if r["status"] == "accepted" else r["status"], "reason": r["reason"], "unit": r["unit"],
            "round": r["round"],
        }
        for r in rows
    ]


def _classify(cfg, msg, raw, from_addr, subject, received, size: int | None = None, assign: Unit | None = None):
    """``size``: the message's real size when ``raw`` holds only its header (too large to load);
    ``assign``: the unit a person said sent it (checks of the sender's identity are then theirs)."""
    rnd = cfg.round_for(received)
    loop_header = cfg.bot["loop_header"]
    if msg.get(loop_header) is not None or (from_addr and from_addr in cfg.own_addresses):
        return IngestResult("ignored", reason="本系统自己发出的邮件，不处理", reason_code="own_mail"), [], None, None
    size = len(raw) if size is None else size
    too_big = size > cfg.bot["max_message_bytes"]
    limits = Limits(
        max_attachments=cfg.bot["max_attachments"],
        zip_limits=ZipLimits(),
        max_decompressed=_positive_int(cfg.bot.get("max_decompressed_bytes"), DEFAULT_MAX_DECOMPRESSED),
        keep_data=frozenset(DOCUMENT_KINDS),
    )
    extracted = Extracted()
    body = ""
    try:
        if not too_big:  # over the size limit it is refused anyway: do not unpack it
            extracted = extract_files(msg, limits)
            body = extracted.body_text
    except (ValueError, TypeError, LookupError, IndexError, AttributeError, RecursionError) as err:  # malformed MIME
        log.warning("could not walk MIME structure: %s", err)
        extracted = Extracted()
        extracted.problem("邮件格式异常，无法读取其中的附件：请只附上台账 Word 文档重新发送", "malformed_mime")
    auto = automatic_reason(msg, from_addr, subject, body)
    if auto:
        return IngestResult("ignored", round=None, reason=f"{auto}，不予回复", reason_code="automatic"), [], extracted, None
    if not extracted.files and assign is None and replies_to_us(msg):
        return (
            IngestResult("ignored", round=rnd.name, reason="对本系统所发邮件的回复（没有附件），已记录，不予回复", reason_code="reply_to_us"),
            [], extracted, None,
        )

    from_count = sum(1 for k, _v in msg.raw_items() if k.lower() == "from")
    if assign is None and (from_count != 1 or not from_addr):
        why = f"邮件有 {from_count} 个发件人（From）头" if from_count > 1 else "发件人（From）没有可用的邮箱地址"
        return (
            IngestResult("quarantined", round=rnd.name, reason=f"{why}，无法确认发件人，已隔离待人工核查（不回复）", reason_code="bad_from"),
            [], extracted, None,
        )
    sender_units = cfg.roster.by_email(from_addr) if from_addr else []
    auth, auth_detail = "absent", ""
    if cfg.bot.get("trust_authentication_results", True):
        auth, auth_detail = sender_authentication(msg, from_addr, cfg.bot.get("authserv_id", ""))
    if sender_units and auth == "fail" and assign is None:
        return (
            IngestResult(
                "quarantined",
                unit=sender_units[0].name,
                round=rnd.name,
                reason=f"发件人 {from_addr} 是登记邮箱，但收信服务器的认证结果为失败（{auth_detail}=fail），疑似伪造，已隔离待人工核查",
                reason_code="auth_failed",
            ),
            [],
            extracted,
            None,
        )
    if sender_units and (auth == "none" or (auth == "absent" and cfg.bot.get("require_authentication_results", False))):
        unverified_roster = f"发件地址 {from_addr} 是登记邮箱，但收信服务器未能确认邮件确实来自该邮箱（{auth_detail or '无认证结果'}）"
    else:
        unverified_roster = None

    candidates: list[Candidate] = []
    if not too_big:
        budget = limits.max_decompressed - extracted.decompressed
        conversions = 0
        max_conversions = _positive_int(cfg.bot.get("max_conversions_per_message"), MAX_CONVERSIONS)
        for f in extracted.files:
            if f.kind in DOCUMENT_KINDS:
                cand = Candidate(f)
                candidates.append(cand)
                cost = parse_cost(f)
                if cost > budget:
                    cand.error = ReportError(
                        f"邮件中的文档解压后总量超过 {limits.max_decompressed // 1024 // 1024} MB 上限，疑似压缩炸弹，"
                        f"「{f.name}」未读取：请只附上台账 Word 文档重新发送",
                        "zip_bomb",
                    )
                    continue
                budget -= cost
                if f.kind in NEEDS_CONVERSION:
                    conversions += 1
                    if conversions > max_conversions:
                        cand.error = ReportError(
                            f"邮件中需要转换格式的旧版文档过多（超过 {max_conversions} 个），「{f.name}」未读取：请只附上台账 Word 文档（.docx）重新发送",
                            "too_many_conversions",
                        )
                        continue
                try:
                    cand.report = parse_document(
                        f.data,
                        cfg.ledger,
                        cfg.roster,
                        conversion_timeout=cfg.bot["conversion_timeout_seconds"],
                        max_bytes=cfg.bot["max_document_bytes"],
                    )
                except ReportError as err:
                    cand.error = err
                except Exception as err:  # noqa: BLE001 - one broken file must not stop the message
                    log.exception("unexpected error parsing %s", f.name)
                    cand.error = ReportError(f"附件「{f.name}」无法读取（文件可能已损坏）：请重新保存为 .docx 后再发送", "unreadable")
                    cand.error.__cause__ = err
    reports = [c for c in candidates if c.report is not None]
    chosen = max(reports, key=lambda c: len(c.report.filled)) if reports else None

    if assign is not None:
        unit, verified, how = assign, True, "coordinator"
    else:
        unit, verified, how = _identify(cfg, sender_units, chosen, subject, extracted.files if extracted else [])
        if unverified_roster and how == "address":
            verified = False
    texts = [("邮件主题", subject)] + [("附件名", f.name) for f in (extracted.files if extracted else [])]
    if chosen is not None and chosen.report.round_text:
        texts.append(("台账标题", chosen.report.round_text))
    rnd, basis = _round_of(cfg, received, texts)
    result = IngestResult("accepted", unit=unit.name if unit else None, round=rnd.name, verified=verified, no_reply=no_reply_reason(msg))
    result.round_basis = basis
    if unit is None:
        result.status, result.reason_code = "quarantined", "unknown_sender"
        result.reason = f"发件人 {from_addr or '（无）'} 不在单位名册中，邮件和附件也没有写明名册中的单位，已隔离待人工核查（不回复）"
        return result, candidates, extracted, None

    reason = None
    if too_big:
        reason = ("too_large", f"邮件过大（{size // 1024 // 1024} MB，上限 {cfg.bot['max_message_bytes'] // 1024 // 1024} MB）：请只附上台账 Word 文档重新发送；大文件请压缩图片或删去与台账无关的附件")
    elif chosen is None:
        reason = _no_report_reason(extracted, candidates)
    elif not chosen.report.filled:
        reason = ("empty_form", "台账中「进展落实情况」一栏全部为空：请逐项填写本单位负责任务的进展落实情况后重新发送")
    else:
        own = set(cfg.roster.tasks_of(unit, cfg.ledger))
        result.foreign = [e.task for e in chosen.report.filled if e.task not in own]
        if len(result.foreign) == len(chosen.report.filled):
            reason = ("foreign_tasks", (
                f"台账中填写了进展的任务（任务{_numbers(result.foreign)}）都不是你单位负责的任务，未登记；"
                f"你单位负责的是任务{_numbers(sorted(own))}：请在这些任务的「进展落实情况」一栏填写后重新发送"
            ))
    if reason:
        result.status, (result.reason_code, result.reason) = "rejected", reason
        return result, candidates, extracted, None

    report = chosen.report
    result.warnings = list(report.warnings)
    if how != "document" and report.unit and report.unit != unit.name:
        basis = {"address": "发件邮箱登记的单位", "coordinator": "政府办公室认定的单位"}.get(how, "邮件主题或附件名中的单位")
        result.warnings.append(
            f"表中「填报单位」写的是「{quote(report.unit_as_written, 20)}」，与{basis}「{unit.name}」不一致，已按「{unit.name}」登记；如有误请联系政府办公室"
        )
    elif report.unit is None:
        result.warnings.append("表中「填报单位」未填写，已按发件邮箱登记的单位记录；今后请填写填报单位、联系人和联系电话")
    if len(reports) > 1:
        others = "、".join(quote(c.file.name, 40) for c in [c for c in reports if c is not chosen][:5])
        result.warnings.append(f"邮件中有多份台账，已登记填写内容最多的「{quote(chosen.file.name, 40)}」，未登记：{others}")
    for cand in [c for c in candidates if c.error is not None and c is not chosen][:5]:
        result.warnings.append(f"附件「{quote(cand.file.name, 40)}」未能读取：{quote(str(cand.error), 200)}")
    for code, problem in zip(extracted.problem_codes, extracted.problems):
        if code != "malformed_mime":
            result.warnings.append(problem)
    if result.foreign:
        result.warnings.append(
            f"任务{_numbers(result.foreign)}不是你单位负责的任务，其填写内容未登记（原件已存档）"
        )
    if not verified:
        basis = "表中填报单位" if how == "document" else "邮件主题或附件名"
        who = unverified_roster if how == "address" and unverified_roster else f"发件地址 {from_addr or '（无）'} 不是「{unit.name}」登记的邮箱"
        result.warnings.append(
            f"{who}，已按{basis}登记为待核实：不会替换从登记邮箱报送并核实的内容，由政府办公室核实后生效；本回执只发送到登记邮箱"
        )
    result.late = rnd.is_late(received)
    return result, candidates, extracted, chosen


ROUND_WORDS = (("年中", "上半年", "半年"), ("年底", "全年", "年终"))


def round_named_in(cfg: Config, text: str) -> str | None:
    """The configured round a text names (年中/半年/上半年 for 年中; 年底/全年/年终 for 年底; or a round's
    own name), or None when it names none or several."""
    found = set()
    for rnd in cfg.rounds:
        words = next((group for group in ROUND_WORDS if rnd.name in group), (rnd.name,))
        if any(w in text for w in words):
            found.add(rnd.name)
    return found.pop() if len(found) == 1 else None


def _round_of(cfg: Config, received: dt.datetime, texts: list[tuple[str, str]]) -> tuple[Round, str | None]:
    """The round a message counts for, and a sentence saying why when a reader could wonder: a round
    named in the subject, a file name or the form wins over the date once it has opened."""
    by_date = cfg.round_for(received)
    for where, text in texts:
        named = round_named_in(cfg, text or "")
        if named is None:
            continue
        rnd = cfg.round_for(received, named=named)
        if rnd.name == named:
            if rnd.name == by_date.name:
                return rnd, None
            return rnd, f"本次报送计入{cfg.round_label(rnd)}：{where}写明了「{named}」（按收到日期本应计入{cfg.round_label(by_date)}）。"
        target = cfg.round_named(named)
        return rnd, (
            f"{where}写明了「{named}」，但{cfg.round_label(target)}报送自 {target.opens:%Y年%-m月%-d日} 起才开始接收，"
            f"本次按收到日期计入{cfg.round_label(rnd)}。"
        )
    return by_date, None


def _identify(cfg: Config, sender_units: list[Unit], chosen: Candidate | None, subject: str, files: list[FoundFile]):
    """(unit, verified, how): by roster address; else the document's 填报单位; else subject or file name."""
    named = cfg.roster.match(chosen.report.unit_as_written) if chosen and chosen.report.unit_as_written else None
    by_text = cfg.roster.match(subject) or next((u for u in (cfg.roster.match(f.name.rsplit(".", 1)[0]) for f in files) if u), None)
    if sender_units:  # config refuses an address registered for two units: at most one
        return sender_units[0], True, "address"
    if named is not None:
        return named, False, "document"
    if by_text is not None:
        return by_text, False, "subject"
    return None, False, ""


MAX_CONVERSIONS = 3  # LibreOffice runs per message (each up to conversion_timeout_seconds)
HOSTILE = ("zip_bomb", "entity")
# Problems that mean the message was not read in full: they explain a missing report best.
LIMIT_PROBLEMS = ("zip_bomb", "too_deep", "too_many_attachments", "encrypted")


def _positive_int(value, default: int) -> int:
    """A config value read defensively (the key may not be in config.DEFAULTS yet)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _no_report_reason(extracted: Extracted | None, candidates: list[Candidate]) -> tuple[str, str]:
    errors = [c.error for c in candidates if c.error is not None]
    problems = list(zip(extracted.problem_codes, extracted.problems)) if extracted else []
    for err in errors:
        if err.code in HOSTILE:
            return err.code, str(err)
    for code, text in problems:
        if code in LIMIT_PROBLEMS:
            return code, text
    if errors:
        first = errors[0]
        return first.code, str(first)
    files = extracted.files if extracted else []
    if problems:
        return problems[0]
    kinds = [f.kind for f in files]
    for kind in ("pdf", "image", "encrypted", "word2003xml", "html", "rar", "7z", "xls", "xlsx", "ppt", "pptx", "empty"):
        if kind in kinds:
            return kind, REFUSALS[kind]
    if files:
        return "not_document", REFUSALS["unknown"]
    return "no_attachment", "邮件中没有附件：请将填报好的台账以 Word 文档（.docx）附件形式发送，不要把内容粘贴在正文中"


def _record(db, base: dict, result: IngestResult, *, duplicate_of: int | None = None, files=(), row_id: int | None = None) -> int:
    row = dict(
        base,
        status=result.status,
        reason=result.reason,
        reason_code=result.reason_code,
        unit=result.unit,
        verified=int(result.verified),
        round=result.round,
        late=int(result.late),
        duplicate_of=duplicate_of,
        warnings=store.dumps(result.warnings),
        files=store.dumps([{"name": f.name, "kind": f.kind, "sha256": f.sha256, "path": f.path} for f in files]),
        processed_at=store.iso(store.now_utc()),
    )
    if row_id is not None:
        row.pop("source", None)  # how it first arrived stays
        db.conn.execute(f"UPDATE messages SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?", [*row.values(), row_id])
        return row_id
    return store.insert(db, "messages", row)


def _withdraw(db, message: int) -> None:
    """Undo what a message recorded (its reports and progress versions) before it is processed again;
    each task it touched falls back to the newest version from another message."""
    reports = [r[0] for r in db.conn.execute("SELECT id FROM reports WHERE message = ?", [message])]
    if not reports:
        return
    marks = ", ".join("?" for _ in reports)
    touched = db.conn.execute(
        f"SELECT DISTINCT round, unit, task FROM progress_history WHERE report IN ({marks})", reports
    ).fetchall()
    db.conn.execute(f"DELETE FROM progress WHERE report IN ({marks})", reports)
    db.conn.execute(f"DELETE FROM progress_history WHERE report IN ({marks})", reports)
    db.conn.execute(f"DELETE FROM reports WHERE id IN ({marks})", reports)
    for round_name, unit, task in touched:
        latest = db.conn.execute(
            "SELECT h.progress, h.report, h.received_at, m.message_id, r.verified FROM progress_history h "
            "JOIN reports r ON r.id = h.report JOIN messages m ON m.id = r.message "
            "WHERE h.round = ? AND h.unit = ? AND h.task = ? ORDER BY r.verified DESC, h.received_at DESC, h.id DESC LIMIT 1",
            [round_name, unit, task],
        ).fetchone()
        if latest is not None:
            db.conn.execute(
                "INSERT OR REPLACE INTO progress (round, unit, task, progress, report, received_at, message_id, verified) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [round_name, unit, task, latest[0], latest[1], latest[2], latest[3] or "", latest[4]],
            )


def _missing(cfg: Config, db, round_name: str, unit_name: str) -> list[int]:
    have = store.current_progress(db, round_name, unit_name)
    return [t for t in cfg.roster.tasks_of(unit_name, cfg.ledger) if not have.get(t)]


def _store_report(cfg: Config, db, result: IngestResult, chosen: Candidate, received: dt.datetime, message_id: str | None) -> None:
    from .supervision import deadline_end, marks

    report = chosen.report
    end = deadline_end(cfg, cfg.round_named(result.round), marks(db, result.round).get(result.unit))  # an extension moves it
    result.late = received >= end
    db.conn.execute("UPDATE messages SET late = ? WHERE id = ?", [int(result.late), result.message_row])
    rows = db.execute(
        "SELECT task, progress, received_at, verified FROM progress WHERE round = ? AND unit = ?", [result.round, result.unit]
    ).fetchall()
    before = {task: text for task, text, _at, _v in rows}
    on_record = {task: at for task, _text, at, _v in rows}
    verified_on_record = {task for task, _text, _at, v in rows if v}
    filled = _own(report.filled, result)
    report_id = store.insert(
        db,
        "reports",
        {
            "message": result.message_row,
            "round": result.round,
            "unit": result.unit,
            "verified": int(result.verified),
            "late": int(result.late),
            "received_at": store.iso(received),
            "filename": chosen.file.name,
            "file_sha256": chosen.file.sha256,
            "unit_as_written": report.unit_as_written,
            "contact": report.contact,
            "phone": report.phone,
            "converted_from": report.converted_from,
            "filled": len(filled),
            "warnings": store.dumps(result.warnings),
        },
    )
    store.record_progress(
        db, result.round, result.unit, [(e.task, e.progress) for e in filled], report_id, store.iso(received), message_id or "",
        verified=result.verified,
    )
    result.tasks = [e.task for e in filled]
    result.missing = _missing(cfg, db, result.round, result.unit)
    if not result.verified:
        result.held = [e.task for e in filled if e.task in verified_on_record]
    result.superseded = [
        e.task for e in filled if e.task not in result.held and (on_record.get(e.task) or "") > store.iso(received)
    ]
    result.replaced = bool(before) and len(result.superseded) < len(filled)
    first = db.execute(
        "SELECT MIN(received_at) FROM reports WHERE round = ? AND unit = ? AND id != ?", [result.round, result.unit, report_id]
    ).fetchone()[0]
    result.first_on_time = bool(first) and dt.datetime.fromisoformat(first) < end
    result.kept = sorted(t for t, text in before.items() if text and t not in result.tasks)


def _own(entries, result: IngestResult) -> list:
    """The filled entries for tasks the unit is responsible for (the others are archived only)."""
    return [e for e in entries if e.task not in result.foreign]


_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u061c\u180e]")


def quote(text: str | None, n: int) -> str:
    """Text someone outside wrote, fit to be shown back: bidi overrides, zero-width and control
    characters removed, whitespace collapsed, at most ``n`` characters."""
    text = _INVISIBLE.sub("", text or "")
    text = "".join(ch if ch >= " " or ch in "\t\n" else " " for ch in text[: n * 8])
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _sentence(text: str) -> str:
    """A message shown as a sentence of its own ends with a full stop."""
    text = text.rstrip()
    return text if not text or text[-1] in "。！？…" else text + "。"


def _numbers(tasks) -> str:
    """Task numbers as people write them: 1、6、7."""
    return "、".join(str(t) for t in tasks)


def _task_title(content: str) -> str:
    first = re.split(r"[。；;]", content, maxsplit=1)[0]
    return quote(first, 30)


def _local(cfg: Config, t: dt.datetime) -> str:
    lt = t.astimezone(cfg.tz)
    return f"{lt.year}年{lt.month}月{lt.day}日 {lt:%H:%M}"


def _deadline_text(rnd: Round) -> str:
    return f"{rnd.deadline.year}年{rnd.deadline.month}月{rnd.deadline.day}日"


def _queue_stranger_notice(cfg: Config, db, result: IngestResult, from_addr: str, received: dt.datetime) -> None:
    """A fixed text, at most once a day per address, for a sender we could not verify: nothing they
    wrote (subject, file names, 填报单位, progress) is sent back to them."""
    from .outbox import queue_mail

    if not from_addr or from_addr in cfg.own_addresses:
        return
    day = store.now_utc().astimezone(cfg.tz).date().isoformat()
    queue_mail(
        db, cfg, dedupe_key=f"stranger:{from_addr}:{day}", kind="stranger", to=[from_addr],
        subject="【自动回复】邮件已收到，待核实", template="stranger", context={}, message_row=result.message_row,
    )


def _queue_reply(cfg, db, result: IngestResult, refs, message_id, from_addr, subject, received, extracted, chosen, reply_key="") -> None:
    from .outbox import queue_mail
    from .supervision import paper_copy_line

    if result.status not in ("accepted", "rejected") or result.unit is None:
        return
    if result.no_reply:
        log.info("message %s recorded without a reply (%s)", result.message_row, result.no_reply)
        return
    unit = cfg.roster.get(result.unit)
    rnd = cfg.round_named(result.round)
    if result.verified:  # a verified roster sender, or a person accepted the mail: answer the sender
        to = [from_addr] if from_addr else list(unit.emails)
        cc = [a for a in unit.emails if a not in to] if result.accepted_by else []
    else:
        # Nothing a stranger wrote goes to anyone but the office and the unit's registered addresses:
        # the sender gets a fixed text at most once a day; the unit gets the receipt with the content.
        _queue_stranger_notice(cfg, db, result, from_addr, received)
        if result.status == "rejected":
            return  # the unit has nothing to correct; the coordinator sees it in the digest and `inbox`
        to, cc, message_id, refs = list(unit.emails), [], None, None
        limit = int(cfg.bot.get("max_unverified_receipts_per_unit_per_day", 3))
        since = store.iso(store.now_utc() - dt.timedelta(days=1))
        queued = db.execute(
            "SELECT COUNT(*) FROM outbox o JOIN messages m ON m.id = o.message WHERE o.kind = 'ack' AND o.unit = ? "
            "AND m.verified = 0 AND o.created_at >= ?", [unit.name, since],
        ).fetchone()[0]
        if queued >= limit:
            log.info("message %s: no receipt to %s (already %d for unverified reports today)", result.message_row, unit.name, queued)
            return
    if not to:
        return  # nobody to answer
    common = {
        "unit": unit.name,
        "round": cfg.round_label(rnd),
        "received": _local(cfg, received),
        "deadline": _deadline_text(rnd),
        "ledger_title": cfg.ledger.title or "任务落实台账",
        "sender": from_addr,
        "verified": result.verified,
    }
    if result.status == "accepted":
        ctx = dict(
            common,
            late=result.late and not result.first_on_time,
            correction_after_deadline=result.late and result.first_on_time,
            replaced=result.replaced,
            kept=result.kept,
            superseded=result.superseded,
            held=result.held,
            recorded=[
                {"number": e.task, "excerpt": quote(e.progress, 40)} for e in _own(chosen.report.filled, result)
            ],
            missing=[{"number": t, "title": _task_title(cfg.ledger.task(t).content)} for t in result.missing],
            total=len(cfg.roster.tasks_of(unit, cfg.ledger)),
            warnings=[_sentence(quote(w, 300)) for w in result.warnings],
            on_deadline_day=received.astimezone(cfg.tz).date() == rnd.deadline,
            round_basis=result.round_basis,
            paper_copy=paper_copy_line(cfg, db, rnd, unit.name),
            correction=True,  # only a receipt has something the unit may correct
        )
        state = "更正" if result.late and result.first_on_time else ("逾期" if result.late else "按时")
        title = f"【回执】{unit.name} {common['round']}台账已登记（{state}，{len(result.tasks)}项）"
        if result.missing:
            title += f"，尚缺{len(result.missing)}项"
        queue_mail(
            db, cfg, dedupe_key=f"ack:{result.message_row}{reply_key}", kind="ack", to=to, cc=cc, subject=title, template="ack", context=ctx,
            unit=unit.name, round_name=rnd.name, message_row=result.message_row, in_reply_to=message_id, references=refs,
        )
    else:
        files = [quote(f.name, 40) for f in extracted.files] if extracted else []
        if len(files) > 20:  # 100 attachments need not be listed back one by one
            files = files[:20] + [f"等共 {len(files)} 个文件"]
        attachments = []
        if result.reason_code not in ("zip_bomb", "entity", "too_large"):
            # The problem is the form: send the unit its own blank one to fill in.
            from .notices import blank_form_path

            try:
                path = blank_form_path(cfg, rnd, unit.name)
                attachments = [{"path": str(path), "name": f"{unit.name}-任务落实台账（填报版）.docx"}]
            except OSError as err:  # e.g. a unit name that is not a valid file name: reply without the form
                log.error("could not prepare the blank form for %r: %s", unit.name, err)
        ctx = dict(common, reason=_sentence(result.reason), subject=quote(subject, 60) or "（无主题）", files=files, form_attached=bool(attachments))
        queue_mail(
            db, cfg, dedupe_key=f"reject:{result.message_row}{reply_key}", kind="reject", to=to,
            subject=f"【退回】{unit.name} {common['round']}台账未能登记，请按邮件说明重新发送",
            template="reject", context=ctx, unit=unit.name, round_name=rnd.name, message_row=result.message_row,
            in_reply_to=message_id, references=refs, attachments=attachments,
        )
