"""`mailbot demo` runs the whole job on loopback and leaves the replies on disk."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys


def test_demo_end_to_end(cfg_path, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mailbot.cli", "--config", str(cfg_path), "demo"], capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stdout + out.stderr
    replies = sorted((tmp_path / "state" / "demo" / "replies").glob("*.eml"))
    assert len(replies) == 6
    subjects = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"] for p in replies]
    assert sum("【回执】" in s for s in subjects) == 4 and sum("【退回】" in s for s in subjects) == 1
    # issue 11: the report from a personal QQ address: its receipt goes to 人社局's registered address,
    # the QQ address gets the fixed notice only
    assert sum(s == "【自动回复】邮件已收到，待核实" for s in subjects) == 1
    assert any("逾期" in s and "司法局" in s for s in subjects)
    assert "已隔离" in out.stdout and "已忽略" in out.stdout and "守护进程正常退出（退出码 0）" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
