"""Raw mail → decoded headers and attachment files, without losing characters.

Python's email package and imap_tools decode legacy Chinese charsets lossily
(QUIRKS 9–12); here every header and file name goes back to its raw bytes and is
decoded strictly, with GB2312-family labels read as GB18030.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.header
import email.errors
import email.message
import email.parser
import email.utils
import hashlib
import io
import itertools
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from email.policy import compat32

from .convert import ZipLimits, open_zip, read_member, sniff
from .errors import ReportError

# Labels that mean "some GB encoding": decode all of them as GB18030, the superset.
_GB_LABELS = {"gb2312", "gb_2312", "gb_2312-80", "gbk", "x-gbk", "cp936", "ms936", "euc-cn", "euccn", "csgb2312", "x-euc-cn", "gb18030", "chinese"}
_NOT_MAIL_CHARSETS = {"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode"}
_CHARSET_ALIASES = {"utf8": "utf-8", "unicode-1-1-utf-8": "utf-8", "x-unknown": "", "unknown-8bit": "", "us-ascii": "utf-8", "ascii": "utf-8"}


def normalize_charset(label: str | None) -> str:
    """The codec to use for a declared charset ('' when unknown)."""
    lab = (label or "").strip().strip('"').lower()
    if lab in _GB_LABELS:
        return "gb18030"
    if lab in ("big5", "big5-hkscs", "cp950", "x-big5"):
        return "big5hkscs"
    lab = _CHARSET_ALIASES.get(lab, lab)
    if not lab or len(lab) > 64:
        return ""
    try:
        info = codecs.lookup(lab)
    except (LookupError, ValueError, TypeError):  # unknown, or junk such as an embedded NUL
        return ""
    # Only real text encodings: not bytes-to-bytes codecs (zlib, base64, rot13), not ones that
    # always fail or turn escapes into arbitrary characters (undefined, unicode-escape, idna).
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL_CHARSETS:
        return ""
    return info.name


def decode_bytes(raw: bytes, charset: str | None = None) -> tuple[str, bool]:
    """Decode strictly with the declared charset, then utf-8, then gb18030, then with replacement.

    Returns (text, exact): exact is False when characters had to be replaced.
    """
    tried = []
    for codec in (normalize_charset(charset), "utf-8", "gb18030"):
        if codec and codec not in tried:
            tried.append(codec)
            try:
                return raw.decode(codec), True
            except (ValueError, LookupError):  # UnicodeError is a ValueError
                continue
    return raw.decode("utf-8", "replace"), False


def _raw_bytes(value: str) -> bytes:
    """Undo compat32's surrogateescape: the header's original bytes."""
    return value.encode("utf-8", "surrogateescape")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def decode_header(value) -> str:
    """A header value (RFC 2047 encoded words, raw 8-bit, or both) as text; control characters removed."""
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        value = str(value)
    value = str(value)
    try:
        parts = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError, LookupError):
        parts = [(value, None)]
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            text, _ok = decode_bytes(_raw_bytes(chunk))
        else:
            text, _ok = decode_bytes(chunk, charset)
        out.append(text)
    text = "".join(out)
    text = re.sub(r"\r?\n[ \t]+", " ", text)
    return _CONTROL.sub("", text).replace("\r", " ").replace("\n", " ").strip()


def raw_header(msg: email.message.Message, name: str, index: int = 0) -> str | None:
    """A header's value as it came (compat32 would wrap 8-bit values in a lossy Header object)."""
    lname = name.lower()
    found = [v for k, v in msg.raw_items() if k.lower() == lname]
    if not found or index >= len(found):
        return None
    value = found[index]
    return value if isinstance(value, str) else str(value)


def header(msg: email.message.Message, name: str) -> str:
    """A header decoded to text (see decode_header)."""
    return decode_header(raw_header(msg, name))


_ADDR_OK = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+$")


def parse_address(value) -> tuple[str, str]:
    """(display name, lower-case address) of a From header; address "" unless exactly one clean address.

    The address is parsed from the raw header *before* encoded words are decoded, so a
    display name like ``=?utf-8?q?mzj=40xixia.example?= <attacker@evil.example>`` cannot
    pose as a roster address.
    """
    if value is None:
        return "", ""
    raw = str(value)
    if any("\udc80" <= c <= "\udcff" for c in raw):  # 8-bit bytes: decode them, keep encoded words as they are
        raw = decode_bytes(_raw_bytes(raw))[0]
    raw = _CONTROL.sub("", raw).replace("\r", " ").replace("\n", " ")
    found = email.utils.getaddresses([raw])
    pairs = [(n, a) for n, a in found if a]
    if len(pairs) != 1 or len(found) != 1:  # "mzj@xixia.example <>" is two addresses, one of them empty
        return (decode_header(pairs[0][0]).strip() if pairs else ""), ""
    name, addr = pairs[0]
    addr = addr.strip().lower()
    if not _ADDR_OK.match(addr):
        addr = ""
    return decode_header(name).strip(), addr


_MSGID = re.compile(r"<[!-;=?-~]{1,250}>")  # printable ASCII without < and >


def clean_msgids(value: str | None) -> str:
    """Only well-formed ASCII <msg-id> tokens: nothing that could break or inject a header."""
    return " ".join(_MSGID.findall(value or ""))


def parse_addresses(values) -> list[str]:
    return [a.lower() for _n, a in email.utils.getaddresses([decode_header(v) for v in values]) if "@" in a]


def _decode_param(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, %-unquoted text as latin-1)
        charset, _lang, text = value
        if isinstance(text, str):
            try:
                raw = text.encode("latin-1", "surrogateescape")
            except UnicodeEncodeError:  # already decoded (raw 8-bit in the header): keep it as text
                return text
        else:
            raw = bytes(text)
        return decode_bytes(raw, charset)[0]
    return decode_header(email.utils.unquote(value)) if "=?" in value else decode_bytes(_raw_bytes(email.utils.unquote(value)))[0]


def _param_view(part: email.message.Message, name: str) -> email.message.Message | None:
    """A header re-read from its raw bytes (decoded utf-8 → gb18030), so 8-bit parameters survive."""
    raw = raw_header(part, name)
    if raw is None:
        return None
    view = email.message.Message()
    text = raw
    if any("\udc80" <= c <= "\udcff" for c in raw):
        text = decode_bytes(_raw_bytes(raw))[0]
    view[name] = _CONTROL.sub("", text.replace("\r", "").replace("\n", " "))
    return view


def attachment_name(part: email.message.Message) -> str | None:
    """The file name of a MIME part from Content-Disposition filename, else Content-Type name."""
    for header_name, param in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        view = _param_view(part, header_name)
        if view is None:
            continue
        try:
            value = view.get_param(param, header=header_name)
        except (ValueError, TypeError, IndexError):
            value = None
        name = _decode_param(value)
        if name:
            return name
    return None


def content_type(part: email.message.Message) -> str:
    view = _param_view(part, "Content-Type")
    return (view.get_content_type() if view is not None else part.get_default_type()).lower()


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f<>:\"|?*]")


def safe_filename(name: str | None, default: str = "attachment") -> str:
    """A file name that is safe to store: no directories, no control characters, bounded length."""
    if not name:
        return default
    name = unicodedata.normalize("NFC", name).replace("\\", "/").split("/")[-1]
    name = _UNSAFE_NAME.sub("_", name).strip().lstrip(".")
    if len(name.encode("utf-8")) > 180:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 8 else ""
        stem = (stem if dot else name).encode("utf-8")[:150].decode("utf-8", "ignore")
        name = f"{stem}.{ext}" if ext else stem
    return name or default


@dataclass
class FoundFile:
    """A file found in a message: an attachment, a member of a zip, or inside a forwarded mail."""

    name: str
    data: bytes  # b"" when its kind is not in Limits.keep_data (only name, kind and hash are needed)
    kind: str
    path: str  # where it was found, e.g. "附件 a.zip › 民政局.docx"
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()


MiB = 1024 * 1024
DEFAULT_MAX_DECOMPRESSED = 128 * MiB


@dataclass
class Limits:
    """Bounds on the work one message may cause (DESIGN invariant 8)."""

    max_attachments: int = 100
    max_depth: int = 8
    zip_limits: ZipLimits = field(default_factory=ZipLimits)
    # Per message, across every decoded part, every zip member (zips in zips too) and, charged
    # by intake, every document parsed: one zip may hold 200 MB, eight zips in a zip may not.
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED
    # Kinds of file whose bytes are kept (the ones that will be parsed); the others keep only
    # their name, kind and hash, so memory does not grow with everything a zip held. None: all.
    keep_data: frozenset[str] | None = None


@dataclass
class Extracted:
    files: list[FoundFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # plain Chinese, for the reply
    body_text: str = ""
    truncated: bool = False  # some parts or files were not looked at (a limit was reached)
    problem_codes: list[str] = field(default_factory=list)  # a reason code per problem (zip_bomb, too_deep …)
    decompressed: int = 0  # bytes decoded or decompressed so far, against Limits.max_decompressed

    def problem(self, text: str, code: str) -> None:
        if code not in self.problem_codes or code not in _ONCE:
            self.problems.append(text)
            self.problem_codes.append(code)


_ONCE = {"too_deep", "too_many_attachments", "zip_bomb", "malformed_mime"}  # said once per message


class LimitDefect(email.errors.MessageDefect):
    """load_message could not parse the whole structure within bounds: headers only."""

    code = "malformed_mime"
    text = "邮件格式异常，系统无法读取其中的附件：请只附上台账 Word 文档重新发送"


class TooDeepDefect(LimitDefect):
    code = "too_deep"
    text = "邮件结构嵌套层数过多，系统无法读取其中的附件：请直接附上台账 Word 文档重新发送（不要层层转发）"


class TooLargeDefect(LimitDefect):
    code = "too_large"
    text = "邮件过大，系统未解析其内容：请只附上台账 Word 文档重新发送"


class TooManyLinesDefect(LimitDefect):
    text = "邮件格式异常（行数异常多），系统未解析其内容：请只附上台账 Word 文档重新发送"


# A legitimate message of up to the size limit is base64 in 76-character lines; millions of
# tiny lines make the standard parser keep one object per line (30× the message in memory).
MAX_LINES = 1_000_000
MIN_AVERAGE_LINE = 24
HEADERS_ONLY_BYTES = 256 * 1024
FEED_BYTES = 1 << 20


def load_message(raw: bytes, max_bytes: int | None = None) -> email.message.Message:
    """Parse a message; a pathological one (over ``max_bytes``, nested past the recursion
    limit, millions of tiny lines) comes back as its headers only, with a LimitDefect saying why."""
    if max_bytes is not None and len(raw) > max_bytes:
        return _headers_only(raw, TooLargeDefect())  # refused anyway: its body is never parsed
    lines = raw.count(b"\n")
    if lines > MAX_LINES and lines * MIN_AVERAGE_LINE > len(raw):
        return _headers_only(raw, TooManyLinesDefect())
    try:
        # Fed in slices: the same parse as message_from_bytes, without first decoding the whole
        # message into one more string (a third of the peak memory of a 50 MB message).
        parser = email.parser.BytesFeedParser(policy=compat32)
        for start in range(0, len(raw), FEED_BYTES):
            parser.feed(raw[start : start + FEED_BYTES])
        return parser.close()
    except RecursionError:
        return _headers_only(raw, TooDeepDefect())


# A header line and at most 16 of its folded continuation lines (the rest are skipped).
_HEADER_LINE = re.compile(rb"(?m)^[^ \t\r\n][^\r\n]*(?:\r?\n[ \t][^\r\n]*){0,16}")


def _headers_only(raw: bytes, defect: LimitDefect) -> email.message.Message:
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    head = raw[: min(ends)] if ends else raw
    if len(head) > HEADERS_ONLY_BYTES:
        # A header folded over millions of lines must not hide From and Subject behind it.
        lines = itertools.islice((m.group() for m in _HEADER_LINE.finditer(head)), 2000)
        head = b"\r\n".join(line[:4096] for line in lines)
    msg = email.parser.BytesParser(policy=compat32).parsebytes(head + b"\r\n\r\n", headersonly=True)
    msg.set_payload("")
    msg.defects.append(defect)
    return msg


_MALFORMED = (email.errors.NoBoundaryInMultipartDefect, email.errors.StartBoundaryNotFoundDefect, email.errors.MultipartInvariantViolationDefect)


def extract_files(msg: email.message.Message, limits: Limits | None = None) -> Extracted:
    """Every candidate file in the message, deduplicated by content, forwarded mail and zips opened."""
    limits = limits or Limits()
    result = Extracted()
    seen: set[str] = set()
    parts_seen = [0]
    budget_mb = limits.max_decompressed // MiB

    def over_budget(size: int) -> bool:
        """Charge ``size`` decompressed bytes to the message; True (and a problem) when it would pass the budget."""
        if result.decompressed + size > limits.max_decompressed:
            result.truncated = True
            result.problem(f"邮件中的附件和压缩包解压后总量超过 {budget_mb} MB 上限，疑似压缩炸弹，其余内容未解压", "zip_bomb")
            return True
        result.decompressed += size
        return False

    def too_deep(what: str) -> None:
        result.truncated = True
        result.problem(f"{what}嵌套层数过多（超过 {limits.max_depth} 层），系统未读取其中的内容：请直接附上台账 Word 文档重新发送", "too_deep")

    def too_many() -> None:
        result.truncated = True
        result.problem(
            f"邮件中的附件过多（超过 {limits.max_attachments} 个），系统只读取了前 {limits.max_attachments} 个：请只附上台账 Word 文档重新发送",
            "too_many_attachments",
        )

    def add(name: str, data: bytes, where: str, depth: int) -> None:
        if len(result.files) >= limits.max_attachments:
            too_many()
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            return
        seen.add(digest)
        kind = sniff(data)
        if kind == "zip":
            if depth >= limits.max_depth:
                too_deep(f"压缩包「{name}」")
                return
            _open_archive(name, data, where, depth)
            return
        if kind == "eml" or kind == "unknown" and name.lower().endswith(".eml"):
            if depth >= limits.max_depth:
                too_deep(f"转发的邮件「{name}」")
                return
            walk(load_message(data), f"{where}（转发的邮件）", depth + 1)
            return
        found = FoundFile(name=name, data=data, kind=kind, path=where)
        if limits.keep_data is not None and kind not in limits.keep_data:
            found.data = b""
        result.files.append(found)

    def _open_archive(name: str, data: bytes, where: str, depth: int) -> None:
        try:
            zf = open_zip(data, f"压缩包「{name}」", limits.zip_limits)
        except ReportError as err:
            if name.lower().endswith((".docx", ".docm", ".doc", ".wps")):
                # A damaged Word file, not an archive: let the parser say it is corrupt.
                result.files.append(FoundFile(name=name, data=data, kind="docx", path=where or f"附件「{name}」"))
            else:
                result.problem(str(err), err.code)
            return
        for info in zf.infolist():
            if info.is_dir():
                continue
            member_name = info.filename
            if not info.flag_bits & 0x800:
                # Chinese Windows tools store GBK names without the UTF-8 flag (QUIRKS 12);
                # zipfile read them as cp437, which gives back the original bytes.
                member_name = decode_bytes(info.filename.encode("cp437", "replace"))[0]
            if member_name.startswith("__MACOSX/") or safe_filename(member_name).startswith("._"):
                continue
            if info.flag_bits & 0x1:
                result.problem(f"压缩包「{name}」已加密，系统无法解压：请直接附上 Word 文档（不要加密压缩）", "encrypted")
                return
            if over_budget(info.file_size):  # declared size; read_member never reads more than that
                return
            try:
                member = read_member(zf, info, limits.zip_limits.max_member_bytes)
            except ReportError as err:
                result.problem(f"压缩包「{name}」中的「{safe_filename(member_name)}」无法解压：{err}", err.code)
                continue
            except (RuntimeError, NotImplementedError):
                result.problem(f"压缩包「{name}」已加密，系统无法解压：请直接附上 Word 文档", "encrypted")
                return
            if member is not None:
                add(safe_filename(member_name), member, f"{where} › {safe_filename(member_name)}", depth + 1)

    def walk(part: email.message.Message, where: str, depth: int) -> None:
        parts_seen[0] += 1
        if parts_seen[0] > limits.max_attachments * 4:
            too_many()
            return
        if depth > limits.max_depth:
            too_deep("邮件结构")
            return
        for defect in part.defects:
            if isinstance(defect, LimitDefect):
                result.truncated = True
                result.problem(defect.text, defect.code)
                return
            if isinstance(defect, _MALFORMED):
                result.problem("邮件格式异常（多段结构不完整），系统可能无法读取其中的附件：请重新发送", "malformed_mime")
        ctype = content_type(part)
        if ctype == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, email.message.Message):
                walk(inner, f"{where}（转发的邮件）", depth + 1)
            return
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                for sub in payload:
                    if isinstance(sub, email.message.Message):
                        walk(sub, where, depth + 1)
            return
        try:
            name = attachment_name(part)
        except (ValueError, TypeError, LookupError, UnicodeError) as err:
            result.problem(f"一个附件的文件名无法解析（{type(err).__name__}），已按无名附件处理", "bad_filename")
            name = None
        disposition = (raw_header(part, "Content-Disposition") or "").split(";")[0].strip().lower()
        if name is None and (ctype.startswith("text/") or ctype.startswith("multipart/")) and disposition != "attachment":
            if ctype == "text/plain" and len(result.body_text) < 20000:
                raw = part.get_payload(decode=True) or b""
                result.body_text += decode_bytes(raw, part.get_content_charset())[0][:20000]
            return
        try:
            data = payload_bytes(part)
        except (ValueError, TypeError, AssertionError):
            data = None
        if data is None or over_budget(len(data)):
            return
        fname = safe_filename(name, default=f"attachment-{parts_seen[0]}")
        add(fname, data, f"附件「{fname}」" if where == "" else f"{where} › {fname}", depth)

    walk(msg, "", 0)
    return result


def payload_bytes(part: email.message.Message) -> bytes | None:
    """A leaf part's decoded bytes, as ``get_payload(decode=True)`` gives them.

    Plain base64 (the usual attachment) is decoded in one step: the standard path copies
    the payload three times and splits it into a list of lines first (5× its size).
    """
    if str(part.get("content-transfer-encoding", "")).strip().lower() == "base64":
        payload = part.get_payload()
        if isinstance(payload, str) and payload.isascii():
            try:
                return binascii.a2b_base64(payload)  # skips line breaks like the standard path
            except (binascii.Error, ValueError):
                pass  # bad padding and the like: let the standard path repair what it can
    return part.get_payload(decode=True)


def parse_cost(f: FoundFile) -> int:
    """What parsing a found document will decompress, to charge against Limits.max_decompressed:
    for a .docx, the declared sizes of its XML parts (the parser reads nothing else); otherwise its size."""
    if f.kind != "docx":
        return len(f.data)
    try:
        with zipfile.ZipFile(io.BytesIO(f.data)) as zf:
            return sum(i.file_size for i in zf.infolist() if i.filename.lower().endswith((".xml", ".rels")))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return len(f.data)  # the parser will call it corrupt
