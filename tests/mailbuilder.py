"""Raw test messages as real clients write them (Foxmail/QQ, 163, Outlook, forwards, zips).

Built by hand at the byte level where the quirk lives in the bytes (GBK labelled
gb2312, RFC 2047 inside parameters, RFC 2231 continuations, raw 8-bit names).
"""

from __future__ import annotations

import base64
import io
import urllib.parse
import zipfile
from email.message import EmailMessage
from email.utils import format_datetime

import datetime as dt

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TZ8 = dt.timezone(dt.timedelta(hours=8))


def when(day: str, hour: int = 10) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=TZ8)


def simple(
    *,
    sender: str = "mzj@xixia.example",
    name: str = "张三",
    subject: str = "民政局报送2023年中台账",
    date: dt.datetime | None = None,
    body: str = "您好，附件是我单位的台账，请查收。",
    attachments: list[tuple[str, bytes]] = (),
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    received: dt.datetime | None = None,
) -> bytes:
    """A plain modern message (UTF-8, RFC 2231 file names) as Python's email package writes it."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = "xxqzwgk001@163.com"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or when("2023-08-10"))
    msg["Message-ID"] = message_id or f"<{abs(hash((sender, subject, body, str(date)))) }@xixia.example>"
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    for fname, data in attachments:
        maintype, subtype = ("application", "octet-stream")
        if fname.endswith(".docx"):
            maintype, subtype = DOCX_TYPE.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=fname)
    raw = bytes(msg)
    if received:
        raw = f"Received: from mx.example by imap.example; {format_datetime(received)}\r\n".encode() + raw
    return raw


def foxmail_gbk(*, sender: str, subject: str, filename: str, data: bytes, date: dt.datetime | None = None, label: str = "gb2312") -> bytes:
    """Foxmail/QQ style: GBK bytes labelled gb2312, RFC 2047 encoded-word inside filename= (QUIRKS 9–10)."""
    subj = "=?%s?B?%s?=" % (label, base64.b64encode(subject.encode("gb18030")).decode())
    fname = "=?%s?B?%s?=" % (label, base64.b64encode(filename.encode("gb18030")).decode())
    body = base64.b64encode("附件为台账，请查收。".encode("gb18030")).decode()
    payload = base64.encodebytes(data).decode()
    return (
        f"From: =?{label}?B?{base64.b64encode('李四'.encode('gb18030')).decode()}?= <{sender}>\r\n"
        f"To: xxqzwgk001@163.com\r\n"
        f"Subject: {subj}\r\n"
        f"Date: {format_datetime(date or when('2023-08-11'))}\r\n"
        f"Message-ID: <fox{abs(hash((sender, subject)))}@qq.example>\r\n"
        f"X-Mailer: Foxmail 7.2\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="----=_NextPart_000"\r\n\r\n'
        "------=_NextPart_000\r\n"
        f'Content-Type: text/plain; charset="{label}"\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n'
        "------=_NextPart_000\r\n"
        f'Content-Type: application/octet-stream; name="{fname}"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{fname}"\r\n\r\n{payload}\r\n'
        "------=_NextPart_000--\r\n"
    ).encode("ascii")


def rfc2231_gbk(*, sender: str, subject: str, filename: str, data: bytes) -> bytes:
    """Outlook-style RFC 2231 filename*0*=GBK''… with continuations, subject raw 8-bit GBK."""
    quoted = urllib.parse.quote(filename.encode("gbk"), safe="")
    half = len(quoted) // 2
    while quoted[half - 1] == "%" or quoted[half - 2] == "%":
        half += 1
    payload = base64.encodebytes(data).decode()
    head = (
        f"From: {sender}\r\nTo: xxqzwgk001@163.com\r\n".encode()
        + b"Subject: " + subject.encode("gbk") + b"\r\n"
        + f"Date: {format_datetime(when('2023-08-12'))}\r\nMessage-ID: <o{abs(hash(subject))}@outlook.example>\r\nMIME-Version: 1.0\r\n".encode()
        + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n--b1\r\n'
        + f"Content-Type: {DOCX_TYPE}\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment;\r\n filename*0*=GBK''{quoted[:half]};\r\n filename*1*={quoted[half:]}\r\n\r\n{payload}\r\n--b1--\r\n".encode()
    )
    return head


def raw_8bit_name(*, sender: str, filename: str, data: bytes) -> bytes:
    """A file name as raw 8-bit GBK bytes in the header, no encoding at all (QUIRKS 10)."""
    payload = base64.encodebytes(data).decode()
    return (
        f"From: {sender}\r\nTo: xxqzwgk001@163.com\r\nSubject: report\r\nDate: {format_datetime(when('2023-08-12'))}\r\n"
        f"Message-ID: <raw{abs(hash(filename))}@x.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b2\r\n'
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n".encode()
        + b'Content-Disposition: attachment; filename="' + filename.encode("gbk") + b'"\r\n\r\n'
        + payload.encode() + b"\r\n--b2--\r\n"
    )


def forward(inner: bytes, *, sender: str, subject: str = "转发：台账") -> bytes:
    """A message forwarding another as message/rfc822 (Outlook 'forward as attachment')."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "xxqzwgk001@163.com"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when("2023-08-13"))
    msg["Message-ID"] = f"<fwd{abs(hash(inner))}@x.example>"
    msg.set_content("转发单位台账")
    from email import message_from_bytes, policy

    msg.add_attachment(message_from_bytes(inner, policy=policy.default))
    return bytes(msg)


class _GbkZipInfo(zipfile.ZipInfo):
    def _encodeFilenameFlags(self):  # write GBK bytes without the UTF-8 flag, as Windows tools do
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def zip_gbk(members: dict[str, bytes]) -> bytes:
    """A zip as Chinese Windows tools write it: GBK names, no UTF-8 flag (QUIRKS 12)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = _GbkZipInfo(name, date_time=(2023, 8, 10, 9, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()
