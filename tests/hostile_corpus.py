"""A corpus of hostile and broken mail (issue 5, item 3), as raw RFC 5322 bytes.

Each ``Item`` is one message with the status (and reason code) mailbot must record
for it. The big ones are built lazily (``item.raw()``) so that listing the corpus is
cheap; ``tests/test_hostile.py`` runs every item through ``mailbot.intake.ingest`` and
``bench/hostile.py`` runs each in its own process to measure time and peak memory.

Unless an item is about the sender, mail comes from a roster address of 民政局, so a
message that cannot be used is *rejected with a reason* (not quarantined in silence).
The zip and XML helpers are the ones tests/test_reports.py already uses for single
files; here they arrive inside mail, many at once, nested, and from strangers.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import random
import struct
import tempfile
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from test_reports import BILLION_LAUGHS, XXE, _docm, _lying_docx_bomb, _null_relationships, _zeros_docx_bomb, cfb, deflate, raw_zip, rezip

SENDER = "mzj@xixia.example"  # 民政局 on the roster
UNIT = "民政局"
DATE = "Thu, 10 Aug 2023 10:00:00 +0800"
DOCX_TYPE = b"application/vnd.openxmlformats-officedocument.wordprocessingml.document"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
STATUSES = ("accepted", "duplicate", "quarantined", "rejected", "ignored")


@dataclass
class Item:
    category: str
    name: str
    build: Callable[[], bytes] = field(repr=False)
    status: str | tuple[str, ...]  # the status mailbot must record (one of several when it may vary)
    code: str | tuple[str, ...] | None = None  # the reason code, when it is fixed
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.category}/{self.name}"

    def raw(self) -> bytes:
        return self.build()

    def statuses(self) -> tuple[str, ...]:
        return self.status if isinstance(self.status, tuple) else (self.status,)

    def codes(self) -> tuple[str | None, ...] | None:
        if self.code is None:
            return None
        return self.code if isinstance(self.code, tuple) else (self.code,)


# --- building blocks -----------------------------------------------------------------------------


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def rfc2231(name: str) -> bytes:
    return b"filename*=utf-8''" + urllib.parse.quote(name.encode("utf-8"), safe="").encode()


def part(
    data: bytes,
    filename: str | bytes | None = "台账.docx",
    *,
    ctype: bytes = DOCX_TYPE,
    cte: bytes = b"base64",
    disposition: bytes = b"attachment",
    extra: bytes = b"",
) -> bytes:
    """One MIME part; ``filename`` str → RFC 2231 (UTF-8), bytes → written raw as filename="…"."""
    if filename is None:
        disp = disposition
    elif isinstance(filename, bytes):
        disp = disposition + b'; filename="' + filename + b'"'
    else:
        disp = disposition + b"; " + rfc2231(filename)
    body = b64(data) if cte == b"base64" else data
    return (
        b"Content-Type: " + ctype + b"\r\nContent-Transfer-Encoding: " + cte + b"\r\nContent-Disposition: " + disp + b"\r\n"
        + extra + b"\r\n" + body
    )


TEXT_PART = b"Content-Type: text/plain; charset=utf-8\r\n\r\n\xe9\x99\x84\xe4\xbb\xb6\xe6\x98\xaf\xe5\x8f\xb0\xe8\xb4\xa6\xe3\x80\x82\r\n"


def message(
    parts: list[bytes] | None = None,
    *,
    sender: bytes | str = SENDER,
    subject: bytes | str = "民政局报送台账",
    msgid: str | None = None,
    headers: bytes = b"",
    boundary: bytes = b"=_hostile_b",
    close: bool = True,
    body: bytes | None = None,
) -> bytes:
    """A message: multipart/mixed of a short text part and ``parts``, or a single text ``body``."""
    if isinstance(subject, str):
        subject = b"=?utf-8?b?" + base64.b64encode(subject.encode()) + b"?="
    if isinstance(sender, str):
        sender = f"Hostile <{sender}>".encode()
    head = (
        headers
        + b"From: " + sender + b"\r\nTo: xxqzwgk001@163.com\r\nSubject: " + subject + b"\r\nDate: " + DATE.encode()
        + b"\r\nMessage-ID: <" + (msgid or f"h{random.getrandbits(64):x}@x.example").encode() + b">\r\nMIME-Version: 1.0\r\n"
    )
    if parts is None:
        return head + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + (body if body is not None else "无附件".encode()) + b"\r\n"
    out = [head, b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n']
    for p in [TEXT_PART, *parts]:
        out += [b"--" + boundary + b"\r\n", p, b"\r\n"]
    if close:
        out.append(b"--" + boundary + b"--\r\n")
    return b"".join(out)


def zip_of(members: list[tuple[str, bytes]], *, stored: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def zeros_zip(megabytes: int, name: str = "data.bin") -> bytes:
    """A .zip whose one member is ``megabytes`` MiB of zeros (about 1000:1), streamed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(name, "w", force_zip64=True) as fh:
            chunk = b"\0" * (1 << 20)
            for _ in range(megabytes):
                fh.write(chunk)
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def _sparse_chunk(seed: int) -> tuple[bytes, bytes]:
    """1 MiB that deflates about 100:1 (a random byte every 512), and its full-flushed deflate stream."""
    rng = random.Random(seed)
    chunk = bytearray(1 << 20)
    for i in range(0, len(chunk), 512):
        chunk[i] = rng.randrange(1, 256)
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return bytes(chunk), co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH)


def honest_member(megabytes: int, seed: int) -> tuple[bytes, int, int]:
    """(deflate data, crc, size) of a member of ``megabytes`` MiB that passes the per-zip ratio check.

    Built from one compressed 1 MiB chunk repeated (a full flush makes deflate streams
    concatenable), with a distinct first chunk so every member has its own content.
    """
    first, first_z = _sparse_chunk(seed)
    rest, rest_z = _sparse_chunk(0)
    crc = zlib.crc32(first)
    for _ in range(megabytes - 1):
        crc = zlib.crc32(rest, crc)
    data = first_z + rest_z * (megabytes - 1) + zlib.compressobj(6, zlib.DEFLATED, -15).flush()
    return data, crc, megabytes << 20


def budget_zip(inner: int = 8, members: int = 3, megabytes: int = 30, seed: int = 1) -> bytes:
    """Zips in a zip: every inner zip obeys the per-zip limits (members ≤ 32 MiB, ratio ~100:1,
    total ≤ 200 MiB), but together they decompress to inner × members × megabytes MiB of distinct data."""
    out = []
    for i in range(inner):
        ms = []
        for j in range(members):
            data, crc, size = honest_member(megabytes, seed * 1000 + i * 10 + j + 1)
            ms.append((f"part{j}.bin", data, crc, len(data), size))
        out.append((f"inner{i}.zip", raw_zip(ms)))
    return zip_of(out, stored=True)


def cfb_encrypted_docx() -> bytes:
    """What Word writes for a password-protected .docx: OLE with EncryptionInfo + EncryptedPackage."""
    rng = random.Random(7)
    info = struct.pack("<HHI", 4, 4, 0x40) + b'<?xml version="1.0"?><encryption/>'.ljust(4088, b" ")
    package = struct.pack("<Q", 20480) + rng.randbytes(8192)
    return cfb([("EncryptionInfo", info), ("EncryptedPackage", package)])


def cfb_encrypted_doc() -> bytes:
    """A Word 97 .doc whose FIB says fEncrypted (bit 0x0100 of the flags at offset 10)."""
    fib = struct.pack("<HH", 0xA5EC, 0xC1) + b"\0" * 6 + struct.pack("<H", 0x0100) + b"\0" * 4084
    return cfb([("WordDocument", fib), ("1Table", b"\0" * 4096)])


def zip_encrypted_member(docx: bytes) -> bytes:
    """A zip whose member has the "encrypted" flag (ZipCrypto) set."""
    data = deflate(docx)
    name = "台账.docx".encode()
    crc = zlib.crc32(docx)
    out = io.BytesIO()
    out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x801, 8, 0, 0x21, crc, len(data) + 12, len(docx), len(name), 0))
    out.write(name + bytes(12) + data)
    cd = out.tell()
    out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x801, 8, 0, 0x21, crc, len(data) + 12, len(docx), len(name), 0, 0, 0, 0, 0, 0) + name)
    end = out.tell()
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, end - cd, cd, 0))
    return out.getvalue()


def set_main_target(docx: bytes, target: str) -> bytes:
    """Point the package's officeDocument relationship at ``target``."""

    def fix(b: bytes) -> bytes:
        import re

        return re.sub(rb'(Type="[^"]*/officeDocument"[^>]*Target=")[^"]*(")|(Target=")[^"]*("[^>]*Type="[^"]*/officeDocument")',
                      lambda m: (m.group(1) or m.group(3)) + target.encode() + (m.group(2) or m.group(4)), b)

    return rezip(docx, replace={"_rels/.rels": fix})


def entity_docx(docx: bytes, xml: bytes, member: str = "word/document.xml") -> bytes:
    return rezip(docx, replace={member: lambda _b: xml})


EXTERNAL_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE w:document SYSTEM "http://127.0.0.1:9/evil.dtd">'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p/></w:body></w:document>'
)
PARAMETER_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/passwd"><!ENTITY % q "<!ENTITY x \'%p;\'>">%q;]>'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>&x;</w:t></w:r></w:p></w:body></w:document>'
)


def deep_multipart(depth: int, leaf: bytes, kind: bytes = b"multipart/mixed") -> bytes:
    """``depth`` nested multiparts (or message/rfc822) around one leaf part."""
    body = leaf
    for i in range(depth, 0, -1):
        b = b"d%d" % i
        if kind == b"message/rfc822":
            body = b"Content-Type: message/rfc822\r\n\r\nFrom: a@b.example\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n" + body
        else:
            body = b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n" + body + b"\r\n--" + b + b"--\r\n"
    return body


def loop_mail(cfg, kind: str = "ack", form: bytes | None = None) -> bytes:
    """Our own reply as the outbox builds it (outbox.build_email), as it would come back to us;
    a rejection carries the blank form (``form``) as its attachment."""
    from mailbot.outbox import build_email

    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        attachments = []
        if form is not None:
            path = Path(tmp) / "form.docx"
            path.write_bytes(form)
            attachments = [{"path": str(path), "name": f"{UNIT}-任务落实台账（填报版）.docx"}]
        row = {
            "to_addrs": json.dumps([SENDER]), "cc_addrs": "[]", "subject": f"【回执】{UNIT} 2023年年中台账已登记", "msgid": "<mailbot.loop@163.com>",
            "in_reply_to": "<h1@x.example>", "references": "<h1@x.example>", "kind": kind, "body_text": "已收到并登记",
            "body_html": "<p>已收到并登记</p>", "attachments": json.dumps(attachments),
        }
        return bytes(build_email(cfg, row))


# --- the corpus ----------------------------------------------------------------------------------


class Corpus:
    """Builds the hostile items around one good report (``good``, a filled 民政局 .docx)."""

    def __init__(self, good: bytes, cfg):
        self.good = good
        self.cfg = cfg

    def items(self, *, big: bool = True) -> list[Item]:
        """Every item; ``big=False`` leaves out the 50–70 MB messages (the bench runs them)."""
        out: list[Item] = []
        for maker in (
            self.zip_bombs, self.entity_bombs, self.big_messages, self.many_attachments, self.nested, self.charsets,
            self.control_chars, self.path_traversal, self.malformed, self.encrypted, self.macros, self.relationships,
            self.forged, self.loops, self.quadratic_text, self.wide_tables, self.expansion,
        ):
            out.extend(i for i in maker() if big or i.category != "big")
        return out

    def _att(self, data: bytes, filename="台账.docx", **kw) -> bytes:
        return message([part(data, filename, **kw)])

    # zip bombs: by ratio, by member count, lying sizes, nested, and over the message budget
    def zip_bombs(self) -> list[Item]:
        g = self.good
        cat = "zip_bomb"
        return [
            Item(cat, "docx_document_xml_200MB_zeros", lambda: self._att(_zeros_docx_bomb(g, 200)), "rejected", "zip_bomb"),
            Item(cat, "docx_5000_members", lambda: self._att(rezip(g, extra=[(f"word/media/i{i}.xml", b"<a/>") for i in range(5000)])), "rejected", "zip_bomb"),
            Item(cat, "docx_lying_sizes_200MB", lambda: self._att(_lying_docx_bomb(g, 200)), "rejected", ("zip_bomb", "corrupt")),
            Item(cat, "docx_ratio_2MB_member", lambda: self._att(rezip(g, extra=[("word/media/image1.png", b"\0" * (2 << 20))])), "rejected", "zip_bomb"),
            Item(cat, "zip_300MB_zeros", lambda: self._att(zeros_zip(300), "台账.zip", ctype=b"application/zip"), "rejected", "zip_bomb"),
            Item(cat, "zip_5000_members", lambda: self._att(zip_of([(f"f{i}.txt", b"x") for i in range(5000)]), "a.zip", ctype=b"application/zip"), "rejected", "zip_bomb"),
            Item(cat, "zip_in_zip_holding_docx_bomb", lambda: self._att(zip_of([("inner.zip", zip_of([("台账.docx", _zeros_docx_bomb(g, 200))]))]), "a.zip", ctype=b"application/zip"), "rejected", "zip_bomb"),
            Item(cat, "zip_nested_20_deep", lambda: self._att(functools.reduce(lambda acc, i: zip_of([(f"l{i}.zip", acc)]), range(20), zip_of([("台账.docx", g)])), "a.zip", ctype=b"application/zip"), "rejected", "too_deep"),
            Item(cat, "zips_in_zip_720MB_total", lambda: self._att(budget_zip(), "a.zip", ctype=b"application/zip"), "rejected", "zip_bomb",
                 "each inner zip passes the per-zip limits; only a per-message budget stops it"),
            Item(cat, "zips_in_zip_720MB_total_and_report", lambda: message([part(budget_zip(seed=2), "a.zip", ctype=b"application/zip"), part(g)]), "rejected", "zip_bomb",
                 "the budget is spent on the zip before the report is reached: nothing more is unpacked"),
            Item(cat, "docx_and_zip_bomb_together", lambda: message([part(g), part(zeros_zip(300), "b.zip", ctype=b"application/zip")]), "accepted", None),
        ]

    # entity bombs in .docx
    def entity_bombs(self) -> list[Item]:
        g = self.good
        cat = "entity_bomb"
        utf16 = BILLION_LAUGHS.replace(b'"UTF-8"', b'"UTF-16"').decode()
        return [
            Item(cat, "billion_laughs", lambda: self._att(entity_docx(g, BILLION_LAUGHS)), "rejected", "entity"),
            Item(cat, "external_entity_file", lambda: self._att(entity_docx(g, XXE)), "rejected", "entity"),
            Item(cat, "external_dtd_http", lambda: self._att(entity_docx(g, EXTERNAL_DTD)), "rejected", "entity"),
            Item(cat, "parameter_entities", lambda: self._att(entity_docx(g, PARAMETER_ENTITY)), "rejected", "entity"),
            Item(cat, "billion_laughs_utf16le", lambda: self._att(entity_docx(g, utf16.encode("utf-16"))), "rejected", "entity"),
            Item(cat, "billion_laughs_utf16be_no_bom", lambda: self._att(entity_docx(g, utf16.encode("utf-16-be"))), "rejected", ("entity", "corrupt")),
            Item(cat, "billion_laughs_utf32", lambda: self._att(entity_docx(g, BILLION_LAUGHS.replace(b'"UTF-8"', b'"UTF-32"').decode().encode("utf-32"))), "rejected", ("entity", "corrupt")),
            Item(cat, "billion_laughs_in_package_rels", lambda: self._att(entity_docx(g, BILLION_LAUGHS, "_rels/.rels")), "accepted", None,
                 "the relationships are unusable, so the main part is found by its usual name"),
            Item(cat, "billion_laughs_in_numbering", lambda: self._att(entity_docx(g, BILLION_LAUGHS, "word/numbering.xml")), "accepted", None),
        ]

    # ~24 MB (under the 30 MB default limit: parsed, within bounded memory), 50 and 70 MB (over
    # it: refused from the headers alone, the body never parsed)
    def big_messages(self) -> list[Item]:
        g = self.good
        cat = "big"
        rnd = lambda n: random.Random(n).randbytes(n)  # noqa: E731
        return [
            Item(cat, "24MB_report_plus_binary", lambda: message([part(g), part(rnd(17 << 20), "录像.mp4", ctype=b"video/mp4")]), "accepted", None),
            Item(cat, "24MB_text_body", lambda: message(body=b"\xe5\x8f\xb0" * (8 << 20)), "rejected", "no_attachment"),
            Item(cat, "24MB_one_header_line", lambda: message([part(g)], headers=b"X-Junk: " + b"a" * (24 << 20) + b"\r\n"), "accepted", None),
            Item(cat, "24MB_report_as_quoted_printable", lambda: message([part(g), part(b"=00" * (8 << 20), "x.bin", ctype=b"application/octet-stream", cte=b"quoted-printable")]), "accepted", None),
            Item(cat, "24MB_of_3_byte_lines", lambda: message(body=b"a\r\n" * (8 << 20)), "rejected", "malformed_mime",
                 "8 million lines: the standard parser would keep one object per line"),
            Item(cat, "24MB_of_empty_lines", lambda: message([part(g)]).replace(b"\r\n\r\n", b"\r\n\r\n" + b"\n" * (24 << 20), 1), "rejected", "malformed_mime"),
            Item(cat, "24MB_header_continuations", lambda: message([part(g)], headers=b"X-Fold: a" + b"\r\n b" * (6 << 20) + b"\r\n"), "rejected", "malformed_mime"),
            Item(cat, "50MB_report_plus_binary", lambda: message([part(g), part(rnd(36 << 20), "录像.mp4", ctype=b"video/mp4")]), "rejected", "too_large"),
            Item(cat, "50MB_text_body", lambda: message(body=b"\xe5\x8f\xb0" * (17 << 20)), "rejected", "too_large"),
            Item(cat, "70MB_over_the_limit", lambda: message([part(g), part(rnd(52 << 20), "录像.mp4", ctype=b"video/mp4")]), "rejected", "too_large"),
        ]

    # 500 attachments
    def many_attachments(self) -> list[Item]:
        g = self.good
        cat = "attachments"
        tiny = [part(b"file %d" % i, f"附件{i}.txt", ctype=b"text/plain") for i in range(500)]
        return [
            Item(cat, "500_small_report_first", lambda: message([part(g)] + tiny), "accepted", None),
            Item(cat, "500_small_report_last", lambda: message(tiny + [part(g)]), "rejected", "too_many_attachments"),
            Item(cat, "500_same_report", lambda: message([part(g, f"台账{i}.docx") for i in range(500)]), "accepted", None),
            Item(cat, "500_distinct_docx", lambda: message([part(rezip(g, extra=[(f"x{i}", b"%d" % i)]), f"台账{i}.docx") for i in range(500)]), "accepted", None),
            Item(cat, "500_empty_parts", lambda: message([b"Content-Type: application/octet-stream\r\n\r\n"] * 500 + [part(g)]), "rejected", "too_many_attachments"),
            Item(cat, "100_junk_ole_files", lambda: message([part(OLE_MAGIC + bytes([i]) * 4000, f"台账{i}.doc", ctype=b"application/msword") for i in range(100)]), "rejected", ("conversion_failed", "no_converter", "conversion_timeout"),
                 "each would start LibreOffice; only the first few are converted"),
            Item(cat, "500_inline_images", lambda: message([part(b"\x89PNG\r\n\x1a\n" + bytes([i % 256]) * 64, None, ctype=b"image/png", disposition=b"inline") for i in range(500)]), "rejected", "too_many_attachments"),
        ]

    def nested(self) -> list[Item]:
        g = self.good
        cat = "nested"
        leaf = part(g)
        return [
            Item(cat, "multipart_5_deep_report", lambda: message([deep_multipart(5, leaf)]), "accepted", None),
            Item(cat, "multipart_200_deep", lambda: message([deep_multipart(200, leaf)]), "rejected", "too_deep"),
            Item(cat, "multipart_2000_deep", lambda: message([deep_multipart(2000, leaf)]), "rejected", "too_deep"),
            Item(cat, "rfc822_200_deep", lambda: message([deep_multipart(200, leaf, b"message/rfc822")]), "rejected", "too_deep"),
            Item(cat, "multipart_200_wide_200_deep", lambda: message([deep_multipart(200, part(b"x", "a.txt", ctype=b"text/plain"))] * 50), "rejected", "too_deep"),
            Item(cat, "eml_file_in_eml_file_12_deep", lambda: functools.reduce(lambda acc, i: message([part(acc, f"fwd{i}.eml", ctype=b"application/octet-stream")]), range(12), self._att(g)), "rejected", "too_deep"),
        ]

    # invalid and lying charsets
    def charsets(self) -> list[Item]:
        g = self.good
        cat = "charset"
        u = "民政局台账".encode()
        enc = lambda cs, raw: b"=?" + cs + b"?B?" + base64.b64encode(raw) + b"?="  # noqa: E731
        text = lambda cs, raw=u: b"Content-Type: text/plain; charset=" + cs + b"\r\n\r\n" + raw + b"\r\n"  # noqa: E731
        items = [
            ("gb2312_label_utf8_bytes", enc(b"gb2312", u), text(b"gb2312")),
            ("utf8_label_gbk_bytes", enc(b"utf-8", "民政局台账".encode("gbk")), text(b"utf-8", "民政局".encode("gbk"))),
            ("unknown_charset_name", enc(b"x-no-such-charset", u), text(b"x-no-such-charset")),
            ("charset_path_traversal", enc(b"../../etc/passwd", u), text(b'"../../etc/passwd"')),
            ("charset_undefined_codec", enc(b"undefined", u), text(b"undefined")),
            ("charset_idna_long_label", enc(b"idna", b"a" * 100 + b"." + b"b" * 70), text(b"idna", b"a" * 100)),
            ("charset_non_text_codecs", enc(b"zlib", u) + b" " + enc(b"rot13", u) + b" " + enc(b"base64", u), text(b"uu")),
            ("charset_utf16_lie", enc(b"utf-16", b"\xff\xfe\x00"), text(b"utf-16", b"\xd8\x00\xd8\x00")),
            ("charset_utf7_and_bad_base64", b"=?utf-7?B?+AGEAYQBh-?= =?utf-8?B?!!!!?= =?utf-8?Q?=ZZ?=", text(b"utf-7", b"+AGE-\xff")),
            ("charset_with_nul_and_quotes", b'=?utf-8\x00"?B?' + base64.b64encode(u) + b"?=", text(b'"utf\x00-8"; charset=gbk')),
            ("raw_8bit_invalid_everywhere", b"\xff\xfe\xfd\x80\x81 \xc3\x28", text(b"utf-8", b"\xff\xfe\xfd\x80")),
        ]
        out = []
        for name, subject, body in items:
            out.append(Item(cat, name, functools.partial(message, [body, part(g)], subject=subject), "accepted", None))
        out.append(Item(cat, "attachment_part_charset_lie", lambda: message([b"Content-Type: application/octet-stream; charset=\"../../x\"; name*=undefined''%FF%FE.docx\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(g)]), "accepted", None))
        out.append(Item(cat, "filename_rfc2231_undefined_codec", lambda: message([b"Content-Type: " + DOCX_TYPE + b"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename*=undefined''%E6%B0%91.docx\r\n\r\n" + b64(g)]), "accepted", None))
        out.append(Item(cat, "from_display_name_undefined_codec", lambda: message([part(g)], sender=b"=?undefined?B?" + base64.b64encode(b"x") + b"?= <" + SENDER.encode() + b">"), "accepted", None))
        return out

    # NUL, CR, LF and other control characters in Subject, From and file names
    def control_chars(self) -> list[Item]:
        g = self.good
        cat = "control"
        return [
            Item(cat, "nul_in_subject_raw", lambda: message([part(g)], subject=b"\xe6\xb0\x91\x00\x01\x02\x1b[31m\x7f"), "accepted", None),
            Item(cat, "crlf_bcc_in_encoded_subject", lambda: message([part(g)], subject=b"=?utf-8?q?a=0D=0ABcc:_evil@x.example=00?="), "accepted", None),
            Item(cat, "nul_in_from", lambda: message([part(g)], sender=b"\x00Evil\x00 <mzj@xixia.example\x00>"), "accepted", None),
            Item(cat, "crlf_in_from_encoded", lambda: message([part(g)], sender=b"=?utf-8?q?x=0D=0ABcc:_evil@x.example?= <mzj@xixia.example>"), "quarantined", "bad_from",
                 "DESIGN: exactly one From with a usable address; this one names two"),
            Item(cat, "nul_crlf_in_filename_raw", lambda: message([part(g, b"a\x00b\x1b\x7f.docx")]), "accepted", None),
            Item(cat, "crlf_in_filename_rfc2231", lambda: message([part(g, "a\r\nBcc: evil@x.example\x00.docx")]), "accepted", None),
            Item(cat, "crlf_in_filename_encoded_word", lambda: message([part(g, b"=?utf-8?q?a=0D=0AX-Evil:_1=00.docx?=")]), "accepted", None),
            Item(cat, "nul_in_body_and_boundary", lambda: message([part(g)], boundary=b"b\x00c"), "accepted", None),
            Item(cat, "bare_cr_line_endings", lambda: message([part(g)]).replace(b"\r\n", b"\r"), "accepted", None),
            Item(cat, "bare_lf_line_endings", lambda: message([part(g)]).replace(b"\r\n", b"\n"), "accepted", None),
            Item(cat, "unicode_line_separators_in_subject", lambda: message([part(g)], subject="民政局\u2028Bcc: evil@x.example\u2029\u0085台账"), "accepted", None),
            Item(cat, "header_without_colon_and_8bit_names", lambda: message([part(g)], headers=b"this is not a header\r\nX-\xe5\x90\x8d: \xff\r\n"), "quarantined", "bad_from",
                 "a first line that is not a header ends the header block: no From"),
        ]

    def path_traversal(self) -> list[Item]:
        g = self.good
        cat = "path"
        names: list[str | bytes] = [
            "../../etc/passwd.docx", "..\\..\\x.docx", "/etc/cron.d/x.docx", "C:\\Windows\\System32\\x.docx", "..", ".", "....docx",
            "民" * 300 + ".docx", "a" * 300 + ".docx", "x.docx" + " " * 50, "%2e%2e%2f%2e%2e%2fx.docx", "．．／．．／x.docx",
            "CON.docx", "\u202ecod.exe", b"../../\xb2\xe2.docx",
        ]
        out = [Item(cat, f"name_{i}", functools.partial(self._att, g, n), "accepted", None, repr(n)[:40]) for i, n in enumerate(names)]
        out.append(Item(cat, "zip_members_with_traversal", lambda: self._att(zip_of([("../../../../tmp/evil.docx", g), ("/abs/x.docx", b"x"), ("..\\..\\y.docx", b"y")]), "a.zip", ctype=b"application/zip"), "accepted", None))
        return out

    def malformed(self) -> list[Item]:
        g = self.good
        cat = "malformed"
        ok = message([part(g)])
        return [
            Item(cat, "missing_closing_boundary", lambda: message([part(g)], close=False), "accepted", None),
            Item(cat, "closing_boundary_cut_mid_base64", lambda: message([part(g)])[: -4000], "rejected", ("corrupt", "unreadable")),
            Item(cat, "base64_garbage", lambda: message([b"Content-Type: " + DOCX_TYPE + b"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=a.docx\r\n\r\n!!!@@@###" + bytes(range(256)) + b"\r\n"]), "rejected", "not_document"),
            Item(cat, "quoted_printable_garbage", lambda: message([part(b"=ZZ=\r\n=0=" + bytes(range(256)), "a.docx", cte=b"quoted-printable")]), "rejected", "not_document"),
            Item(cat, "uuencode_garbage", lambda: message([part(b"begin 644 a.docx\r\n!!!!\r\nend\r\n", "a.docx", cte=b"x-uuencode")]), "rejected", "not_document"),
            Item(cat, "unknown_transfer_encoding", lambda: message([part(b64(g), "a.docx", cte=b"x-gzip64")]), "rejected", "not_document"),
            Item(cat, "empty_message", lambda: b"", "quarantined", "bad_from"),
            Item(cat, "headers_only_no_blank_line", lambda: ok.split(b"\r\n\r\n", 1)[0], "rejected", "malformed_mime"),
            Item(cat, "headers_only_from_stranger", lambda: b"From: x@spam.example\r\nSubject: hi", "quarantined", "unknown_sender"),
            Item(cat, "random_binary_1MB", lambda: random.Random(5).randbytes(1 << 20), "quarantined", "bad_from"),
            Item(cat, "multipart_without_boundary", lambda: message([part(g)]).replace(b'; boundary="=_hostile_b"', b""), "rejected", "malformed_mime"),
            Item(cat, "multipart_empty_boundary", lambda: message([part(g)], boundary=b""), "accepted", None),
            Item(cat, "boundary_never_used", lambda: message([part(g)]).replace(b'boundary="=_hostile_b"', b'boundary="other"'), "rejected", "malformed_mime"),
            Item(cat, "one_line_1MB_no_newline", lambda: b"From: " + SENDER.encode() + b"\r\nSubject: x\r\n\r\n" + b"A" * (1 << 20), "rejected", "no_attachment"),
            Item(cat, "two_from_headers", lambda: b"From: evil@x.example\r\n" + ok, "quarantined", "bad_from",
                 "DESIGN: exactly one From; two cannot say who sent it"),
            Item(cat, "from_with_1000_addresses", lambda: message([part(g)], sender=b", ".join(b"u%d@x.example" % i for i in range(1000)) + b", " + SENDER.encode()), "quarantined", "bad_from"),
            Item(cat, "group_syntax_and_comments", lambda: message([part(g)], sender=b"undisclosed:(comment (nested \\) ) ;;<>,,"), "quarantined", "bad_from"),
            Item(cat, "rfc822_part_empty", lambda: message([b"Content-Type: message/rfc822\r\n\r\n", part(g)]), "accepted", None),
            Item(cat, "rfc822_part_base64_garbage", lambda: message([b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n", part(g)]), "accepted", None),
            Item(cat, "content_type_garbage", lambda: message([part(g, ctype=b"\x00;;;==;/;charset*=''';name*0*=%;name*1*=\xff")]), "accepted", None),
            Item(cat, "date_and_received_garbage", lambda: b"Received: from x by y; Fri, 31 Dec 99999 99:99:99 +9999\r\nDate: \x00yesterday\r\n" + ok, "accepted", None),
            Item(cat, "10000_headers", lambda: b"".join(b"X-H%d: v\r\n" % i for i in range(10000)) + ok, "accepted", None),
        ]

    def encrypted(self) -> list[Item]:
        g = self.good
        cat = "encrypted"
        return [
            Item(cat, "ole_encrypted_package_docx", lambda: self._att(cfb_encrypted_docx()), "rejected", "encrypted"),
            Item(cat, "ole_encrypted_doc", lambda: self._att(cfb_encrypted_doc(), "台账.doc", ctype=b"application/msword"), "rejected", "encrypted"),
            Item(cat, "zip_with_encrypted_member", lambda: self._att(zip_encrypted_member(g), "台账.zip", ctype=b"application/zip"), "rejected", "encrypted"),
        ]

    def macros(self) -> list[Item]:
        g = self.good
        cat = "macros"
        remote = rezip(g, replace={"word/_rels/document.xml.rels": lambda b: b.replace(
            b"</Relationships>",
            b'<Relationship Id="rIdT" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" '
            b'Target="http://127.0.0.1:9/evil.dotm" TargetMode="External"/></Relationships>')})
        return [
            Item(cat, "docm_with_vbaProject", lambda: self._att(_docm(g), "台账.docm", ctype=b"application/vnd.ms-word.document.macroEnabled.12"), "accepted", None,
                 "the text is read; nothing in the file is ever run"),
            Item(cat, "remote_template_relationship", lambda: self._att(remote), "accepted", None),
        ]

    def relationships(self) -> list[Item]:
        g = self.good
        cat = "rels"
        return [
            Item(cat, "document_rels_NULL_targets", lambda: self._att(rezip(g, replace={"word/_rels/document.xml.rels": _null_relationships})), "accepted", None),
            Item(cat, "main_part_NULL", lambda: self._att(set_main_target(g, "NULL")), "accepted", None),
            Item(cat, "main_part_traversal", lambda: self._att(set_main_target(g, "../../../x")), "accepted", None),
            Item(cat, "main_part_absolute", lambda: self._att(set_main_target(g, "/etc/passwd")), "accepted", None),
            Item(cat, "main_part_is_content_types", lambda: self._att(set_main_target(g, "[Content_Types].xml")), "rejected", "not_ledger"),
            Item(cat, "package_rels_missing", lambda: self._att(rezip(g, skip={"_rels/.rels"})), "accepted", None),
        ]

    def forged(self) -> list[Item]:
        g = self.good
        cat = "forged"
        ar = lambda v: b"Authentication-Results: mx.163.com; " + v + b"\r\n"  # noqa: E731
        return [
            Item(cat, "dmarc_fail", lambda: message([part(g)], headers=ar(b"dmarc=fail (p=none) header.from=xixia.example")), "quarantined", "auth_failed"),
            Item(cat, "spf_fail", lambda: message([part(g)], headers=ar(b"spf=fail smtp.mailfrom=mzj@xixia.example")), "quarantined", "auth_failed"),
            Item(cat, "dkim_fail_uppercase", lambda: message([part(g)], headers=ar(b"DKIM = FAIL header.d=xixia.example")), "quarantined", "auth_failed"),
            Item(cat, "fail_top_pass_below", lambda: message([part(g)], headers=ar(b"dmarc=fail") + ar(b"dmarc=pass")), "quarantined", "auth_failed"),
            Item(cat, "pass_top_fail_below_forged_by_sender", lambda: message([part(g)], headers=ar(b"dmarc=pass") + ar(b"dmarc=fail")), "quarantined", "auth_failed",
                 "DESIGN: every Authentication-Results with our authserv-id counts, and any fail quarantines"),
            Item(cat, "softfail_only", lambda: message([part(g)], headers=ar(b"spf=softfail")), "accepted", None),
            Item(cat, "dmarc_fail_bomb_attached", lambda: message([part(_zeros_docx_bomb(g, 200))], headers=ar(b"dmarc=fail")), "quarantined", "auth_failed"),
        ]

    def loops(self) -> list[Item]:
        cfg = self.cfg
        cat = "loop"
        loop_header = cfg.bot["loop_header"].encode()
        return [
            Item(cat, "our_ack_back", lambda: loop_mail(cfg), "ignored", "own_mail"),
            Item(cat, "our_reject_with_form_back", lambda: loop_mail(cfg, "reject", form=self.good), "ignored", "own_mail"),
            Item(cat, "loop_header_from_roster", lambda: message([part(self.good)], headers=loop_header + b": xxqzwgk001@163.com\r\n"), "ignored", "own_mail"),
            Item(cat, "from_our_address_no_loop_header", lambda: loop_mail(cfg).replace(loop_header + b":", b"X-Removed:"), "ignored", "own_mail"),
            Item(cat, "auto_reply_to_our_ack", lambda: message(None, subject="自动回复：【回执】民政局", headers=b"Auto-Submitted: auto-replied\r\nIn-Reply-To: <mailbot.loop@163.com>\r\n"), "ignored", "automatic"),
            Item(cat, "bounce_of_our_ack", lambda: message(None, sender="MAILER-DAEMON@xixia.example", subject="Undelivered Mail Returned to Sender", body=loop_mail(cfg)), "ignored", "automatic"),
        ]


    # issue 11: documents whose cost in time or memory is out of proportion to their size.
    # Each is a small .docx with a real ledger table (so the parser goes all the way),
    # generated by code; the comment says what it did before the fix.
    def quadratic_text(self) -> list[Item]:
        """Long whitespace runs inside the 填报单位 / 联系人 / 电话 values (the patterns' lookahead
        rescanned the rest of the run at every position: 120k spaces took 117 s)."""
        cat = "regex"
        att = lambda *blocks: self._att(resource_docx(*blocks))  # noqa: E731
        sp = " " * 200_000
        return [
            Item(cat, "unit_200k_spaces", lambda: att(w_p("填报单位：民政局" + sp + "（盖章）")), "accepted", None, "1.6 KB .docx; more than 60 s before"),
            Item(cat, "unit_900k_spaces", lambda: att(w_p("填报单位：民政局" + " " * 900_000 + "（盖章）")), "accepted", None,
                 "about the most that stays under the zip ratio check's 1 MiB: hours before"),
            Item(cat, "unit_200k_spaces_then_contact", lambda: att(w_p("填报单位：民政局" + sp + "x  联系人：张三")), "accepted", None),
            Item(cat, "unit_200k_ideographic_spaces", lambda: att(w_p("填报单位：民政局" + "\u3000" * 200_000 + "x")), "accepted", None),
            Item(cat, "unit_100k_tabs", lambda: att(w_p_runs([b"<w:t>" + "填报单位：民政局".encode() + b"</w:t>"] + [b"<w:tab/>"] * 100_000 + [b"<w:t>x</w:t>"])), "accepted", None),
            Item(cat, "unit_200k_spaces_in_a_table_cell", lambda: att(w_tbl(w_tr(w_tc("填报单位："), w_tc("民政局" + sp + "x"), w_tc("联系人："), w_tc("张" + sp + "三")))), "accepted", None),
            Item(cat, "unit_line_of_spaced_labels", lambda: att(w_p("填报单位：x" + "填 报 单 位 " * 40_000)), "accepted", None),
            Item(cat, "contact_200k_spaces", lambda: att(w_p("填报单位：民政局  联系人：张" + sp + "x")), "accepted", None),
            Item(cat, "contact_and_phone_label_200k_spaces", lambda: att(w_p("填报单位：民政局  联系人及联系电话：张" + sp + "三")), "accepted", None),
            Item(cat, "phone_200k_spaces", lambda: att(w_p("填报单位：民政局  联系电话：" + sp + "x")), "accepted", None),
            Item(cat, "phone_100k_digit_space_pairs", lambda: att(w_p("填报单位：民政局  联系电话：" + "1 " * 100_000 + "x")), "accepted", None),
            Item(cat, "unit_200k_spaces_below_the_table", lambda: self._att(resource_docx(after=[w_p("填报单位：民政局" + sp + "x")])), "accepted", None),
        ]

    def wide_tables(self) -> list[Item]:
        """Rows of 21,000 cells and their vMerge continuations (14.7 s before: the cell above was
        found by scanning the row, for every cell)."""
        cat = "table"
        att = lambda *blocks, **kw: self._att(resource_docx(*blocks, **kw))  # noqa: E731
        return [
            Item(cat, "vmerge_row_21000_cells", lambda: att(wide_vmerge_table(21_000)), "accepted", None, "3 KB .docx; 14.7 s before"),
            Item(cat, "vmerge_rows_21000_cells_x4", lambda: att(wide_vmerge_table(21_000, rows=4)), "accepted", None),
            Item(cat, "vmerge_row_21000_cells_inside_the_ledger", lambda: att(ledger_rows=wide_vmerge_rows(21_000)), "accepted", None),
            Item(cat, "nested_table_21000_cells_in_a_progress_cell", lambda: att(progress_xml=w_tbl(*wide_vmerge_rows(21_000))), "accepted", None),
            Item(cat, "gridspan_huge_values", lambda: att(w_tbl(w_tr(*[w_tc("x", b'<w:gridSpan w:val="%d"/>' % (10 ** 12 + i)) for i in range(2000)]),
                                                        w_tr(*[w_tc("", b"<w:vMerge/>") for _ in range(2000)]))), "accepted", None),
        ]

    def expansion(self) -> list[Item]:
        """XML that expands into millions of elements (31 MB of empty paragraphs: 1.7 GB before)."""
        cat = "expansion"
        att = lambda *blocks, **kw: self._att(resource_docx(*blocks, **kw))  # noqa: E731
        return [
            Item(cat, "empty_paragraphs_31MB_above_the_table", lambda: att(empty_paragraphs(31 << 20)), "rejected", "too_complex",
                 "380 KB .docx: 5 million elements"),
            Item(cat, "empty_paragraphs_31MB_below_the_table", lambda: att(after=[empty_paragraphs(31 << 20)]), "rejected", "too_complex"),
            Item(cat, "empty_paragraphs_31MB_in_a_progress_cell", lambda: att(progress_xml=empty_paragraphs(31 << 20)), "rejected", "too_complex"),
            Item(cat, "empty_rows_31MB_in_the_ledger", lambda: att(ledger_rows=[empty_paragraphs(31 << 20, tag=b"w:tr")]), "rejected", "too_complex"),
            Item(cat, "empty_paragraphs_just_under_the_cap", lambda: att(empty_paragraphs(2_950_000)), "accepted", None,
                 "about 480,000 elements, under the cap of 500,000: what reading that many costs"),
            Item(cat, "numbering_20k_levels", lambda: att(numbered_paragraphs(40_000), numbering=numbering_levels(20_000)), "accepted", None,
                 "a counter per level, all scanned for every paragraph: quadratic before"),
            Item(cat, "numbering_letters_from_10_9", lambda: att(numbered_paragraphs(2_000, level=False), numbering=numbering_levels(1, start=999_999_999, fmt="lowerLetter")), "accepted", None,
                 "a label of 38 million letters per paragraph before"),
            Item(cat, "numbering_1MB_label_template", lambda: att(numbered_paragraphs(2_000, level=False), numbering=numbering_levels(1, text="%1" * 500_000)), "accepted", None),
        ]


# --- resources: small documents built by code (issue 11) -----------------------------------------------

W_DECL = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
W_NS_ATTR = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
CONTENT_TYPES = (
    W_DECL + b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    b"</Types>"
)
PACKAGE_RELS = (
    W_DECL + b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
    b"</Relationships>"
)


def _esc(text: str) -> bytes:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").encode("utf-8")


def w_p(text: str = "") -> bytes:
    return b'<w:p><w:r><w:t xml:space="preserve">' + _esc(text) + b"</w:t></w:r></w:p>"


def w_p_runs(inner: list[bytes]) -> bytes:
    return b"<w:p><w:r>" + b"".join(inner) + b"</w:r></w:p>"


def w_tc(text: str | bytes = "", props: bytes = b"") -> bytes:
    body = text if isinstance(text, bytes) else w_p(text)
    return b"<w:tc>" + (b"<w:tcPr>" + props + b"</w:tcPr>" if props else b"") + body + b"</w:tc>"


def w_tr(*cells: bytes) -> bytes:
    return b"<w:tr>" + b"".join(cells) + b"</w:tr>"


def w_tbl(*rows: bytes) -> bytes:
    return b"<w:tbl>" + b"".join(rows) + b"</w:tbl>"


def ledger_table(progress_xml: bytes | None = None, extra_rows: list[bytes] = ()) -> bytes:
    """序号 | 主要内容 | 进展落实情况 and the 30 tasks, each with progress (task 1's cell may be any XML)."""
    rows = [w_tr(w_tc("序号"), w_tc("主要内容"), w_tc("进展落实情况"))]
    for n in range(1, 31):
        progress = w_p(f"任务{n}已按要求落实。") + (progress_xml if n == 1 and progress_xml else b"")
        rows.append(w_tr(w_tc(str(n)), w_tc(""), w_tc(progress)))
    return w_tbl(*rows[:2], *extra_rows, *rows[2:])


def resource_docx(*before: bytes, after: list[bytes] = (), progress_xml: bytes | None = None, ledger_rows: list[bytes] = (),
                  numbering: bytes | None = None) -> bytes:
    """A minimal .docx: ``before`` blocks, the ledger table (with ``ledger_rows`` after its first
    task and ``progress_xml`` in task 1's progress cell), ``after`` blocks; written member by member."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES)
        zf.writestr("_rels/.rels", PACKAGE_RELS)
        with zf.open("word/document.xml", "w", force_zip64=True) as fh:
            fh.write(W_DECL + b"<w:document " + W_NS_ATTR + b"><w:body>")
            for block in before:
                fh.write(block)
            fh.write(ledger_table(progress_xml, list(ledger_rows)))
            for block in after:
                fh.write(block)
            fh.write(b"</w:body></w:document>")
        if numbering is not None:
            zf.writestr("word/numbering.xml", numbering)
    return buf.getvalue()


def wide_vmerge_rows(cells: int, rows: int = 1) -> list[bytes]:
    """A row of ``cells`` cells, then ``rows`` rows of as many vMerge continuations (one cell in
    eight carries a random revision id, so the part passes the zip ratio check)."""
    rng = random.Random(cells)

    def cell(props: bytes, i: int) -> bytes:
        para = b'<w:p w:rsidR="%08X"/>' % rng.getrandbits(32) if i % 8 == 0 else b"<w:p/>"
        return w_tc(para, props)

    first = w_tr(*[cell(b'<w:vMerge w:val="restart"/>', i) for i in range(cells)])
    return [first] + [w_tr(*[cell(b"<w:vMerge/>", i) for i in range(cells)]) for _ in range(rows)]


def wide_vmerge_table(cells: int, rows: int = 1) -> bytes:
    return w_tbl(*wide_vmerge_rows(cells, rows))


def empty_paragraphs(size: int, *, tag: bytes = b"w:p") -> bytes:
    """About ``size`` bytes of empty elements (``<w:p/>``). One in 150 carries a random revision
    id, so the part deflates only about 90:1 and passes the zip ratio check (200:1): the attack's
    31 MB fit in a 254 KB .docx, these in 380 KB."""
    empty = b"<" + tag + b"/>"
    rng = random.Random(11)
    block = empty * 150
    out, total = [], 0
    while total < size:
        piece = block + b"<" + tag + b' w:rsidR="%08X"/>' % rng.getrandbits(32)
        out.append(piece)
        total += len(piece)
    return b"".join(out)


def numbering_levels(levels: int, *, start: int = 1, fmt: str = "decimal", text: str = "%1.") -> bytes:
    """numbering.xml: one list (numId 1) with ``levels`` levels."""
    lvls = b"".join(
        b'<w:lvl w:ilvl="%d"><w:start w:val="%d"/><w:numFmt w:val="%s"/><w:lvlText w:val="%s"/></w:lvl>' % (i, start, fmt.encode(), _esc(text))
        for i in range(levels)
    )
    return (W_DECL + b"<w:numbering " + W_NS_ATTR + b'><w:abstractNum w:abstractNumId="0">' + lvls
            + b'</w:abstractNum><w:num w:numId="1"><w:abstractNumId w:val="0"/></w:num></w:numbering>')


def numbered_paragraphs(n: int, *, level: bool = True) -> bytes:
    """``n`` numbered paragraphs, at levels 0, 1, 2 … (``level``) or all at level 0."""
    return b"".join(
        b'<w:p><w:pPr><w:numPr><w:ilvl w:val="%d"/><w:numId w:val="1"/></w:numPr></w:pPr><w:r><w:t>x</w:t></w:r></w:p>' % (i if level else 0)
        for i in range(n)
    )


def flood(n: int = 1000, sender: str = SENDER) -> Iterator[bytes]:
    """``n`` distinct messages from one address, none with a usable report (each earns a rejection)."""
    for i in range(n):
        yield message(None, sender=sender, subject=f"民政局台账 {i}", msgid=f"flood{i}@x.example", body=f"第{i}封".encode())


def good_report(ledger_dict: dict, directory: Path) -> bytes:
    """The plain real layout, all 30 tasks filled, unit 民政局 (tests/docbuilder.py)."""
    from docbuilder import build_report

    path = Path(directory) / "good.docx"
    progress = {t: f"任务{t}已按要求落实，发布信息{t}条。" for t in range(1, 31)}
    build_report(path, ledger_dict["sections"], ledger_dict["tasks"], unit=UNIT, progress=progress)
    return path.read_bytes()
