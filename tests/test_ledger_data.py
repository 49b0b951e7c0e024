"""The 2023 Xixia task ledger (mailbot/data/ledger_2023.json) must match its seed.

The seed (tests/data/seed_2023.txt) is a PDF-to-text dump of a Word table, so
cell text is broken across lines, columns are interleaved, page footers such as
"— 6 —" appear, and a couple of cells (tasks 15 and 24) continue after a page
break.  The checks therefore compare against the seed with all whitespace and
page footers removed, and allow a field to be found as up to three pieces.
"""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LEDGER_PATH = HERE / ".." / "mailbot" / "data" / "ledger_2023.json"
SEED_PATH = HERE / "data" / "seed_2023.txt"

ALLOWED_DEADLINES = {"11月底", "12月底", "8月底前", "长期坚持"}
NUMERALS = "一二三四"
TABLE_HEADER = "序号重点工作主要内容量化指标责任单位完成时限进展落实情况"
MAX_PIECES = 3
MIN_PIECE_LEN = 6

EXPECTED_SECTIONS = {
    1: "围绕深化重点领域做好政务公开",
    2: "围绕政策发布推送和解读咨询做好政务公开",
    3: "围绕全方位参与互动做好政务公开",
    4: "围绕夯实工作基础做好政务公开",
}

# (section, item, task numbers)
EXPECTED_ITEMS = [
    (1, "聚焦经济高质量发展深化公开", [1]),
    (1, "聚焦保障改善民生深化公开", [2, 3, 4]),
    (1, "做好政府自身建设信息公开", [5, 6, 7]),
    (2, "优化政策集中发布", [8, 9]),
    (2, "做好政策高质量解读", [10, 11, 12]),
    (2, "优化政策咨询服务", [13]),
    (3, "做好重大行政决策事项全流程公开", [14, 15, 16]),
    (3, "畅通政民互动主渠道", [17, 18]),
    (3, "常态化开展政府开放日活动", [19]),
    (4, "深入推进村（居）务公开工作", [20]),
    (4, "加强政务公开平台规范化建设管理", [21, 22, 23, 24]),
    (4, "规范政府公报内容及形式", [25]),
    (4, "加强培训交流和业务指导", [26]),
    (4, "组织开展调查研究活动", [27]),
    (4, "加强工作任务落实", [28, 29, 30]),
]
EXPECTED_TASK_MAP = {
    n: (section, item) for section, item, numbers in EXPECTED_ITEMS for n in numbers
}

CJK = re.compile(r"[\u4e00-\u9fff]")


def squash(text):
    """Remove all whitespace, then page footers like '—6—'."""
    return re.sub(r"—\d+—", "", re.sub(r"\s+", "", text))


@pytest.fixture(scope="module")
def ledger():
    with open(LEDGER_PATH, encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def seed_raw():
    return SEED_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def seed(seed_raw):
    return squash(seed_raw)


def match_pieces(text, hay, start=0):
    """Split ``text`` into consecutive pieces found in order in ``hay``.

    Greedy: each piece is the longest prefix of the remaining text that occurs
    in ``hay`` at or after the end of the previous piece (earliest occurrence).
    Returns a list of (piece, position) or None if some character is not found.
    """
    pieces = []
    pos = start
    rest = text
    while rest:
        if hay.find(rest[:1], pos) == -1:
            return None
        # presence of a prefix is monotone in its length: binary search it
        lo, hi = 1, len(rest)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if hay.find(rest[:mid], pos) != -1:
                lo = mid
            else:
                hi = mid - 1
        piece = rest[:lo]
        at = hay.find(piece, pos)
        pieces.append((piece, at))
        pos = at + len(piece)
        rest = rest[lo:]
    return pieces


def describe(pieces):
    if pieces is None:
        return "some character not found at all"
    return " | ".join(f"[{len(p)}@{at}] {p}" for p, at in pieces)


def check_field(task, field, hay, start=0):
    """Return (ok, pieces, message)."""
    text = task[field]
    where = f"task {task['number']} ({task['item']}) field {field!r}"
    if not isinstance(text, str) or not text:
        return False, None, f"{where}: empty or not a string: {text!r}"
    if squash(text) != text:
        return False, None, f"{where}: contains whitespace: {text!r}"
    if hay.find(text, start) != -1:
        return True, [(text, hay.find(text, start))], ""
    pieces = match_pieces(text, hay, start)
    ok = (
        pieces is not None
        and len(pieces) <= MAX_PIECES
        and all(len(p) >= MIN_PIECE_LEN for p, _ in pieces)
    )
    msg = (
        f"{where} is not in the seed whole nor as <= {MAX_PIECES} in-order pieces "
        f"of >= {MIN_PIECE_LEN} chars.\n  value:  {text}\n  pieces: {describe(pieces)}"
    )
    return ok, pieces, "" if ok else msg


def test_header(ledger, seed):
    assert ledger["year"] == 2023
    assert ledger["title"] == "银川市西夏区2023年政务公开工作要点任务落实台账"
    assert ledger["title"] in seed
    intro = ledger["intro"]
    assert intro.startswith("《银川市西夏区2023年政务公开工作要点》共4个板块、15个大项、30项重点任务")
    assert intro.endswith("年度扣分。")
    assert squash(intro) == intro, "intro must be one line without spaces"
    assert intro in seed, "intro is not found verbatim in the whitespace-stripped seed"


def test_sections(ledger, seed):
    sections = ledger["sections"]
    assert [s["number"] for s in sections] == [1, 2, 3, 4]
    for s in sections:
        n = s["number"]
        assert s["title"] == EXPECTED_SECTIONS[n], f"section {n}: {s['title']!r}"
        assert not s["title"].startswith(NUMERALS[n - 1]), f"section {n} keeps its prefix"
        heading = f"{NUMERALS[n - 1]}、{s['title']}"
        assert heading in seed, f"section {n}: heading {heading!r} not in the seed"


def test_task_numbers(ledger):
    numbers = [t["number"] for t in ledger["tasks"]]
    assert numbers == list(range(1, 31)), f"task numbers: {numbers}"


def test_task_keys(ledger):
    keys = ["number", "section", "item", "content", "indicator", "units", "deadline"]
    for t in ledger["tasks"]:
        assert list(t) == keys, f"task {t.get('number')}: keys {list(t)}"


def test_items(ledger, seed):
    items = list(dict.fromkeys(t["item"] for t in ledger["tasks"]))
    assert len(items) == 15, f"{len(items)} distinct items: {items}"
    assert items == [item for _, item, _ in EXPECTED_ITEMS]
    for item in items:
        assert item in seed, f"item {item!r} not in the whitespace-stripped seed"


def test_task_section_and_item(ledger):
    wrong = [
        f"task {t['number']}: got ({t['section']}, {t['item']}), "
        f"expected {EXPECTED_TASK_MAP[t['number']]}"
        for t in ledger["tasks"]
        if (t["section"], t["item"]) != EXPECTED_TASK_MAP.get(t["number"])
    ]
    assert not wrong, "\n".join(wrong)


def test_deadlines(ledger):
    wrong = [
        f"task {t['number']}: deadline {t['deadline']!r}"
        for t in ledger["tasks"]
        if t["deadline"] not in ALLOWED_DEADLINES
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("field", ["content", "indicator", "units"])
def test_fields_found_in_seed(ledger, seed, field):
    failures = []
    for t in ledger["tasks"]:
        ok, _, msg = check_field(t, field, seed)
        if not ok:
            failures.append(msg)
    assert not failures, "\n".join(failures)


def test_split_cells_are_complete(ledger):
    """The page-break continuations belong to tasks 15 and 24."""
    tasks = {t["number"]: t for t in ledger["tasks"]}
    assert "以及较为集中意见不予采纳的原因" in tasks[15]["content"]
    assert tasks[15]["content"].endswith("将征求意见情况一并公开。")
    assert "更新调整，全面展现政府机构配置情况。线下在镇（街）" in tasks[24]["content"]
    assert tasks[24]["content"].endswith("彼此映衬。")


def test_seed_table_is_covered(ledger, seed):
    """Nearly every Chinese character of the seed table is accounted for.

    Walk the tasks in order: each task's fields are located at or after the
    start of that task's content (which itself is after the previous task's),
    and the matched seed positions are marked (no seed text may be claimed
    twice); then section headings and item cells are marked, and the unmarked
    Chinese characters are counted.
    """
    begin = seed.index(TABLE_HEADER) + len(TABLE_HEADER)
    region = seed[begin:]
    marked = bytearray(len(region))

    def mark(at, length):
        marked[at:at + length] = b"\x01" * length

    for n, title in EXPECTED_SECTIONS.items():
        heading = f"{NUMERALS[n - 1]}、{title}"
        at = region.find(heading)
        if at != -1:
            mark(at, len(heading))

    cursor = 0
    failures = []
    for t in ledger["tasks"]:
        ok, pieces, msg = check_field(t, "content", region, cursor)
        if not ok:
            failures.append("(walking in order) " + msg)
            continue
        cursor = pieces[0][1]
        for field in ("content", "indicator", "units", "deadline"):
            ok, pieces, msg = check_field(t, field, region, cursor)
            if not ok:
                failures.append("(walking in order) " + msg)
                continue
            for piece, at in pieces:
                if any(marked[at:at + len(piece)]):
                    failures.append(
                        f"(walking in order) task {t['number']} field {field!r}: "
                        f"seed text {piece!r} at {at} is already claimed by another "
                        "field, section heading or item"
                    )
                mark(at, len(piece))
    assert not failures, "\n".join(failures)

    # item cells (printed once per merged cell, again after a page break);
    # occurrences inside already matched task text are not item cells
    for _, item, _ in EXPECTED_ITEMS:
        for m in re.finditer(re.escape(item), region):
            if not any(marked[m.start():m.end()]):
                mark(m.start(), len(item))

    total = [i for i, ch in enumerate(region) if CJK.match(ch)]
    missing = [i for i in total if not marked[i]]
    coverage = 1 - len(missing) / len(total)
    runs = re.findall(r"[\u4e00-\u9fff]{2,}", "".join(
        ch if (CJK.match(ch) and not marked[i]) else " " for i, ch in enumerate(region)
    ))
    detail = f"coverage {coverage:.2%}; unmatched seed text: {runs or Counter(region[i] for i in missing)}"
    assert coverage >= 0.95, detail
    assert not runs, "seed text not present in any task: " + detail
