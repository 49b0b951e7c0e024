"""Supervision rules (督查): a task's due date from its 完成时限, and a completion state from its 进展落实情况.

Pure functions: no database, no config, no clock (the caller passes ``year`` and ``today``).
Everything here is linear in its input: texts are capped, every pattern is a literal alternation or a
bounded window, nothing backtracks over unbounded input.

Due dates
---------
``due_date("11月底", 2023)`` reads what the ledger wrote:

* a date: ``8月底前`` → 31 Aug, ``6月30日前`` → 30 Jun, ``9月`` → 30 Sep (end of that month), ``年底前`` →
  31 Dec, ``上半年`` → 30 Jun, ``第三季度``/``三季度末`` → 30 Sep; an explicit year wins (``2023年10月底前``);
  ``次年``/``明年`` mean ``year + 1``; full-width digits, Chinese numerals (``十一月底``) and spaces are fine.
  ``上旬`` → the 10th, ``中旬`` → the 20th, ``月中`` → the 15th, ``月初`` → the 10th.
  Several dates in one cell (``8月底前完成制定，12月底前完成``): all are kept in ``dates`` and the latest one
  is the due date (in real ledgers the latest is also the last one written).
* ongoing, no date: ``长期坚持``, ``持续推进``, ``常态化``, ``全年持续``, ``每季度``, ``每月``… A date that is
  itself recurring (``每年12月底前``) is not a due date. A cell with both a one-off date and an ongoing
  word (``8月底前完成，长期坚持``) has that date.
* unreadable: no date, with a warning for people (``完成时限「X」无法识别，未设定截止日期``).

Completion states
-----------------
``classify(progress_text, ongoing_task)`` reads one (round, unit, task) text:

* ``done``: the text says the task is complete (已完成, 全部完成, 已落实到位, 已全部落实, 已按期完成, 已办结,
  完成全年任务, 完成率100%…).
* ``in_progress``: started but not complete, or unclear. Percentages under 100% (已完成58%), plans and
  expectations (预计/计划/将于/力争/确保…完成, 11月底前完成 without 已), negation before 完成 in its clause
  (未完成, 尚未完成, 没有完成, 未能按期完成), partial completion (完成了一半, 部分完成, 大部分已完成),
  **基本完成 and 初步完成** (supervision wants full completion), and **a sub-step done** (已完成初稿,
  已完成前期调研, 已完成第一阶段): the step is done, the task is not.
* ``not_started``: 暂未开展, 尚未启动, 还没有开始, 待启动, 计划下半年开展, 无/暂无…
* ``ongoing``: only for a task without a date (``ongoing_task=True``) reported as carried on (持续开展,
  常态化推进, 正在推进, 已完成本季度…). A dated task reported the same way is ``in_progress``.
* ``not_reported``: blank, ``None``, or only punctuation (``/``, ``——``).

Several statements in one text (lines, sentences, clauses between commas): the text is ``done`` when at
least one clause states completion and **no clause states that something is still unfinished** (in
progress, partial, planned, not started, only a period done). So ``1.政策解读已完成；2.专栏建设正在推进中``
is ``in_progress``. Clauses that don't block completion: history (``6月已启动…``), upkeep
(``持续做好信息更新``, ``常态化开展``) and forward-looking sentences from ``下一步``/``今后``/``后续``/
``下阶段``/``接下来`` to the end of the sentence (``…已于6月完成，下一步将持续做好信息更新`` is done),
unless they mention work that is left (剩余, 余下, 尚有, 仍有).
A text with content but no statement either way (``已发布政策解读12篇``) is ``in_progress`` (``ongoing`` for
an ongoing task): ``done`` needs an explicit statement.
An ongoing task whose text says plainly that it is complete (已全部完成) is ``done``; only a period done
(已完成本季度更新) keeps it ``ongoing``.

Not recognised (left to the coordinator's override): 不涉及/无此项工作 (not applicable) reads as
``in_progress`` like any text without a statement.

``is_overdue(due, completion, today)`` is the 未按时完成 rule: a dated task past its due day and not done.

Each result carries ``basis``, a short Chinese phrase quoting the words that decided it
(``含「已完成」``), for display as ``系统判断：含「已完成」``. The coordinator may override any state; that
override lives outside these rules.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from mailbot.ledger import Task

# ---------------------------------------------------------------------------------------------------------
# Shared text handling

MAX_DEADLINE_CHARS = 200
MAX_PROGRESS_CHARS = 2000

_CN_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
# A run of Chinese numerals that counts a year, month, day or quarter: 十一月, 三十日, 第三季度, 二〇二三年.
_CN_NUMBER_BEFORE_UNIT = re.compile(r"[〇零一二两三四五六七八九十]{1,4}(?=[年月日号季])")
_PERCENT_WORDS = re.compile(r"百分之(百|[〇零一二两三四五六七八九十]{1,3}|\d{1,3})")


def _cn_number(run: str) -> int | None:
    """十一 → 11, 三十 → 30, 二〇二三 → 2023; None for what is not a plain number."""
    if "十" in run:
        head, _, tail = run.partition("十")
        if "十" in tail or len(head) > 1 or len(tail) > 1:
            return None
        tens = _CN_DIGITS[head] if head else 1
        return tens * 10 + (_CN_DIGITS[tail] if tail else 0)
    return int("".join(str(_CN_DIGITS[c]) for c in run))


def _arabic(text: str, dates: bool = True) -> str:
    """Chinese numerals that count percentages (and, with ``dates``, years, months, days, quarters) as digits."""

    def number(m: re.Match) -> str:
        value = _cn_number(m.group(0))
        return m.group(0) if value is None else str(value)

    def percent(m: re.Match) -> str:
        word = m.group(1)
        if word == "百":
            return "100%"
        value = int(word) if word.isdigit() else _cn_number(word)
        return m.group(0) if value is None else f"{value}%"

    text = _PERCENT_WORDS.sub(percent, text)
    return _CN_NUMBER_BEFORE_UNIT.sub(number, text) if dates else text


def _normalize(text: str, limit: int, progress: bool = False) -> str:
    """NFKC (full-width digits and ％ → ASCII), Arabic digits, no spaces.

    For a progress text (``progress``), newlines stay (they separate statements) and only percentages become
    digits, so that the words quoted in ``basis`` are the writer's own.
    """
    text = unicodedata.normalize("NFKC", (text or "")[:limit])
    text = re.sub(r"[^\S\n]+" if progress else r"\s+", "", text)
    return _arabic(text, dates=not progress)


def _quote(text: str, limit: int = 16) -> str:
    text = text.strip("，,。；;：: \n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------------------
# Due dates

DATED = "date"
ONGOING_DEADLINE = "ongoing"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class DueDate:
    """What a 完成时限 as written means: a date, ongoing (no date), or unreadable (no date, with a warning)."""

    text: str  # as written
    kind: str  # DATED | ONGOING_DEADLINE | UNREADABLE
    date: date | None = None  # the due date (the latest of ``dates``)
    dates: tuple[date, ...] = ()  # every date the cell names, in the order written
    warning: str | None = None  # for people, when unreadable

    @property
    def is_dated(self) -> bool:
        return self.kind == DATED

    @property
    def is_ongoing(self) -> bool:
        return self.kind == ONGOING_DEADLINE

    @property
    def label(self) -> str:
        """For people: 2023年11月30日 / 长期任务，无截止日期 / the warning."""
        if self.date is not None:
            return f"{self.date.year}年{self.date.month}月{self.date.day}日"
        if self.is_ongoing:
            return "长期任务，无截止日期"
        return self.warning or "未设定截止日期"


def _year(m: re.Match, prefix: str, default: int) -> int:
    explicit = m.group(prefix + "y")
    if explicit:
        return int(explicit)
    relative = m.group(prefix + "r") or ""
    return default + 1 if relative[:1] in ("次", "明", "翌", "来") else default


def _y(prefix: str) -> str:
    """An optional year before a date: 2023年, 次年, 明年, 今年…"""
    return rf"(?:(?P<{prefix}y>\d{{4}})年|(?P<{prefix}r>次年|明年|翌年|来年|今年|当年|本年))?"


_DATE = re.compile(
    # 6月30日, 2023年10月15号
    r"(?P<day>" + _y("a") + r"(?P<am>\d{1,2})月(?P<ad>\d{1,2})[日号])"
    # 8月底, 9月, 9月份, 10月中旬
    r"|(?P<month>" + _y("b") + r"(?P<bm>\d{1,2})月(?P<bp>上旬|中旬|下旬|初|中|底|末|份)?)"
    # 上半年, 2024年下半年
    r"|(?P<half>" + _y("c") + r"(?P<ch>上|下)半年)"
    # 第三季度, 3季度末
    r"|(?P<quarter>" + _y("d") + r"第?(?P<dq>[1-4])季度)"
    # 年底, 2023年底, 今年年末, 年内, 年中
    r"|(?P<year>(?:(?P<ey>\d{4})|(?P<er>次|明|翌|来|今|当|本))?年(?P<ek>底|末|终|内|中))"
)
# What makes a date recurring (每年12月底前) and a cell ongoing (长期坚持, 每季度).
_RECURRING_BEFORE = re.compile(r"每个?(?:年度?|半年|季度?|月|周|旬)$")
_ONGOING_DEADLINE = re.compile(r"长期|持续|常态|经常|定期|全年|随时|及时|动态|日常|滚动|坚持|每")


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _read_date(m: re.Match, year: int) -> date | None:
    """The date one match of _DATE names, or None when it names no real date (13月, 2月30日)."""
    try:
        if m.group("day"):
            return date(_year(m, "a", year), int(m.group("am")), int(m.group("ad")))
        if m.group("month"):
            y, month, part = _year(m, "b", year), int(m.group("bm")), m.group("bp") or ""
            if not 1 <= month <= 12:
                return None
            day = {"上旬": 10, "初": 10, "中": 15, "中旬": 20}.get(part)
            return date(y, month, day) if day else _month_end(y, month)
        if m.group("half"):
            y = _year(m, "c", year)
            return date(y, 6, 30) if m.group("ch") == "上" else date(y, 12, 31)
        if m.group("quarter"):
            return _month_end(_year(m, "d", year), int(m.group("dq")) * 3)
        y = _year(m, "e", year)
        return date(y, 6, 30) if m.group("ek") == "中" else date(y, 12, 31)
    except ValueError:
        return None


def due_date(deadline_text: str, year: int) -> DueDate:
    """A task's due date from its 完成时限 as written, in the ledger's ``year`` unless the text names one."""
    written = (deadline_text or "").strip()
    text = _normalize(written, MAX_DEADLINE_CHARS).replace("年度", "年").replace("年年", "年")
    if not text:
        return DueDate(written, UNREADABLE, warning="完成时限未填写，未设定截止日期")
    dates: list[date] = []
    for m in _DATE.finditer(text):
        if _RECURRING_BEFORE.search(text[max(0, m.start() - 4) : m.start()]):
            continue  # 每年12月底前: a date every year, not a due date
        found = _read_date(m, year)
        if found is not None:
            dates.append(found)
    if dates:
        return DueDate(written, DATED, date=max(dates), dates=tuple(dates))
    if _ONGOING_DEADLINE.search(text):
        return DueDate(written, ONGOING_DEADLINE)
    return DueDate(written, UNREADABLE, warning=f"完成时限「{_quote(written, 30)}」无法识别，未设定截止日期")


def task_due_date(task: Task, year: int) -> DueDate:
    return due_date(task.deadline, year)


# ---------------------------------------------------------------------------------------------------------
# Completion states

DONE = "done"
IN_PROGRESS = "in_progress"
NOT_STARTED = "not_started"
ONGOING = "ongoing"
NOT_REPORTED = "not_reported"
STATES = (DONE, IN_PROGRESS, NOT_STARTED, ONGOING, NOT_REPORTED)
STATE_LABELS = {DONE: "已完成", IN_PROGRESS: "推进中", NOT_STARTED: "未启动", ONGOING: "持续推进", NOT_REPORTED: "未填报"}


@dataclass(frozen=True)
class Completion:
    state: str  # one of STATES
    basis: str  # the words that decided it, in Chinese: 含「已完成」

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def explanation(self) -> str:
        return f"系统判断：{self.basis}"


# What a clause says (internal).
_S_DONE = "done"  # complete
_S_PERIOD = "period"  # complete for a period only: 已完成本季度更新
_S_OPEN = "open"  # still unfinished: in progress, partial, planned, negated, a sub-step done
_S_NOT_STARTED = "not_started"
_S_CARRIED = "carried"  # carried on / upkeep: 持续开展, 常态化推进
_S_STARTED = "started"  # history: 已启动, 已开展

_SENTENCES = re.compile(r"[。；;！!？?\n]")
_CLAUSES = re.compile(r"[，,：:]")
_FOLLOW_UP = re.compile(r"下一步|下步|今后|后续|下阶段|下一阶段|接下来")
_LEFT_OVER = re.compile(r"剩余|余下|尚有|仍有")

# Words that look like a negation, a plan or a completion but are not; masked (same length) before checks.
_MASK = re.compile(
    r"不断|不折不扣|不打折扣|不定期|不少于|不低于|不超过|不仅|不但|不遗余力|不留死角|不间断|不懈|不同|不动产|不良|"
    r"不作为|不正当|不规范|不合理|不合格|不文明|一个不落|未成年|未来|罚没|没收|"
    r"按计划|按照计划|按原计划|计划内|准备工作|草拟|模拟|待遇|接待|期待|对待|"
    r"完成情况|完成时限|完成时间|完成进度|完成率|完成比例|完成度|完成质量|完成效果|完成数|完成值|完成量"
)
_COMPLETION = re.compile(r"完成|办结|完结|完毕|完工|竣工|落实到位|整改到位|全部落实|均已落实|已落实$")
_NEGATION = re.compile(r"未|没|不|无法")
_DONE_LEAD = re.compile(r"全部|全面|按期|如期|按时|顺利|圆满|提前|均")
_NEGATION_AFTER = re.compile(r"得?不")
_FUTURE = re.compile(
    r"预计|将于|将在|将会|将要|即将|力争|争取|确保|拟于|拟在|拟将|有望|预期|打算|应于|应在|需于|需在|须于|须在|"
    r"要在|要于|有待|计划(?=于|在|将|\d|[年月上下本今明次全第]|完成)"
)
_FUTURE_AT_END = re.compile(r"将(?:全部|全面|按期|如期|按时|及时|逐步)?$")
# A deadline before 完成 (11月底前完成, 年底完成) without 已 is a plan, not a report.
_DEADLINE_WORDING = re.compile(r"(?:[年月日旬]|季度)(?:底|末)?前|(?:[年月]|季度)(?:底|末)")
_PROGRESS_BEFORE = re.compile(r"正在|正加紧|正抓紧|正积极|加紧|抓紧|加快|努力|逐步|尚在|仍在")
_PARTIAL = re.compile(
    r"(?:基本|初步|部分|大体|局部)(?:已|上)?(?:完成|落实|到位|建成|办结)|一半|过半|大半|多半|大部分|大部|近半|分之|部分|"
    r"剩余|余下|尚有|仍有"
)
_SUB_STEP = re.compile(
    r"初稿|草稿|征求意见稿|送审稿|初步|前期|第[一二三1-3]阶段|首批|第[一1]批|摸底|初审|框架|起草|调研"
)
_PERIOD = re.compile(r"本季度|本月|当月|当季|本周|本阶段|阶段性|上半年|第?[1-4一二三四]季度|年中")
_PERIOD_AS_SUBJECT = re.compile(r"的?(?:任务|工作|目标|计划|更新|指标)")
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d{1,2})?)%")
_PERCENT_CONTEXT = re.compile(r"完成|进度|执行")
_NOT_STARTED = re.compile(
    r"(?:暂|尚|还|仍)?(?:未|没有|没)(?:能|有)?(?:开展|启动|开始|实施|着手|部署|进行)|待(?:启动|开展|部署)|"
    r"(?:暂|尚)?(?:无|没有)进展|^暂?无$"
)
_PLAN_TO_START = re.compile(
    r"(?:计划(?=于|在|将|\d|[年月上下本今明次全第])|拟(?![定订稿写制])|准备|将于|将在|打算|预计)[^，,]{0,12}?"
    r"(?:开展|启动|实施|部署|组织|举办|召开)"
)
_IN_PROGRESS = re.compile(
    r"正在|(?:进行|推进|实施|办理|建设|编制|制定|起草|完善|整改|落实|审核|修订|筹备|对接|梳理|调研|更新|研究|招标|审批)中|"
    r"有序推进|稳步推进|扎实推进|积极推进|加快推进|全力推进|加紧|抓紧|尚在|仍在|还在|"
    r"待[^，,]{0,8}?(?:审核|审批|审定|审议|印发|上会|验收|批复|发布|确认)"
)
_CARRIED = re.compile(
    r"持续|常态化|常态|长期|坚持|定期|经常|常年|每月|每季度|每周|每年|每半年|及时更新|动态更新|实时更新|滚动|日常"
)
_STARTED = re.compile(r"已启动|启动|着手|已开始|开始|已开展")
_BLANK = re.compile(r"[\s/\\\-—_－―…·.。,，、;；:：()（）]*")


def _mask(clause: str) -> str:
    return _MASK.sub(lambda m: "#" * len(m.group(0)), clause)


def _percent_signals(clause: str, masked: str) -> list[tuple[str, str]]:
    """Percentages of completion in a clause (已完成58%, 完成率100%, 进度达60%): they decide it."""
    out = []
    future = _FUTURE.search(masked)  # 预计完成率100%: a target, not a result
    for m in _PERCENT.finditer(clause):
        before = clause[max(0, m.start() - 12) : m.start()]
        after = clause[m.end() : m.end() + 6]
        context = list(_PERCENT_CONTEXT.finditer(before))
        if not context and not _PERCENT_CONTEXT.search(after):
            continue  # 满意率98%: not about completion
        start = m.start() - len(before) + context[0].start() if context else m.start()
        if start > 0 and clause[start - 1] == "已":
            start -= 1
        phrase = clause[start : m.end()]
        if (future and future.start() < m.start()) or _NEGATION.search(masked, start, m.start()):
            out.append((_S_OPEN, phrase))
        else:
            out.append((_S_DONE if float(m.group(1)) >= 100 else _S_OPEN, phrase))
    return out


def _span(hit: re.Match | None, offset: int) -> tuple[int, int] | None:
    return (hit.start() + offset, hit.end() + offset) if hit else None


def _completion_signals(clause: str, masked: str) -> list[tuple[str, str]]:
    """Each 完成 (办结, 落实到位…) in a clause, read with the words governing it.

    The words governing an occurrence are those since the previous occurrence (``region``, where
    negations, plans and subjects are) and those up to the next one (``tail``, its object).
    """
    found = list(_COMPLETION.finditer(masked))
    out = []
    for i, m in enumerate(found):
        prev_end = found[i - 1].end() if i else 0
        next_start = found[i + 1].start() if i + 1 < len(found) else len(masked)
        region, tail = masked[prev_end : m.start()], masked[m.end() : next_start]
        word_end = m.end()
        # A negation counts after the last 已: 对不作为问题整改已完成 is done, 已过期未完成 is not.
        after_already = region.rfind("已") + 1
        negation = _NEGATION.search(region, after_already)
        negation_after = _NEGATION_AFTER.match(tail)
        future = _FUTURE.search(region) or _FUTURE_AT_END.search(region)
        progress = _PROGRESS_BEFORE.search(region)
        deadline = None if "已" in region else _DEADLINE_WORDING.search(region)
        if negation:  # 尚未完成, 没有按期完成, 未能全部落实到位
            out.append((_S_OPEN, clause[prev_end + negation.start() : word_end]))
        elif negation_after:  # 完成不了
            out.append((_S_OPEN, clause[m.start() : word_end + negation_after.end() + 1]))
        elif future or progress:  # 预计11月底前完成, 正在加紧完成
            hit = future or progress
            out.append((_S_OPEN, clause[prev_end + hit.start() : word_end]))
        elif deadline:  # 11月底前完成 (without 已): a plan
            out.append((_S_OPEN, clause[prev_end + max(0, deadline.start() - 2) : word_end]))
        else:
            already = region.rfind("已")
            if already >= 0 and len(region) - already <= 8:
                start = prev_end + already  # 已完成, 已于6月完成, 已全部完成
            else:
                lead = _DONE_LEAD.search(region[-2:])
                start = m.start() - (2 - lead.start() if lead else 0)
            end = word_end if start < m.start() else min(next_start, word_end + 4)  # 完成全年任务
            # What was completed: a sub-step (已完成初稿, 方案初稿已完成) or one period (已完成本季度更新)?
            sub_step = _span(_SUB_STEP.search(tail), m.end()) or _span(_SUB_STEP.search(region), prev_end)
            period = _span(_PERIOD.search(tail), m.end())
            if period is None:
                for p in _PERIOD.finditer(region):  # 本季度工作已完成 (but not 已于上半年完成)
                    if _PERIOD_AS_SUBJECT.match(region, p.end()):
                        period = _span(p, prev_end)
                        break
            if sub_step:
                out.append((_S_OPEN, clause[min(start, sub_step[0]) : max(end, sub_step[1])]))
            elif period:
                out.append((_S_PERIOD, clause[min(start, period[0]) : max(end, period[1])]))
            else:
                out.append((_S_DONE, clause[start:end]))
    return out


def _clause_signals(clause: str, follow_up: bool) -> list[tuple[str, str]]:
    """What one clause (between commas) says, as (signal, the words that say it)."""
    if follow_up:
        left = _LEFT_OVER.search(clause)
        return [(_S_OPEN, clause[left.start() : left.start() + 12])] if left else []
    masked = _mask(clause)
    percents = _percent_signals(clause, masked)
    if percents:
        return percents
    signals = []
    not_started = _NOT_STARTED.search(masked) or _PLAN_TO_START.search(masked)
    if not_started:
        signals.append((_S_NOT_STARTED, clause[not_started.start() : not_started.end()]))
    completions = _completion_signals(clause, masked)
    if completions:
        partial = _PARTIAL.search(clause)
        if partial:
            # 基本完成, 完成了一半, 大部分已完成: the clause says unfinished, whatever its 完成 says.
            first = clause.find(completions[0][1])
            start = min(partial.start(), first) if first >= 0 else partial.start()
            end = max(partial.end(), first + len(completions[0][1]))
            signals.append((_S_OPEN, clause[start:end]))
        else:
            signals.extend(completions)
    in_progress = _IN_PROGRESS.search(masked)
    if in_progress and not any(s == _S_OPEN for s, _ in signals):
        signals.append((_S_OPEN, clause[in_progress.start() : in_progress.end() + 6]))
    if signals:
        return signals
    for pattern, signal in ((_CARRIED, _S_CARRIED), (_STARTED, _S_STARTED)):
        hit = pattern.search(clause)
        if hit:
            return [(signal, clause[hit.start() : hit.end() + 4])]
    return []


def _signals(text: str) -> list[tuple[str, str]]:
    out = []
    for sentence in _SENTENCES.split(text):
        follow_up = False
        for clause in _CLAUSES.split(sentence):
            if not clause:
                continue
            marker = _FOLLOW_UP.search(clause)
            if marker and not follow_up:
                # The words before 下一步 in the same clause still report.
                out.extend(_clause_signals(clause[: marker.start()], False))
                clause, follow_up = clause[marker.start() :], True
            out.extend(_clause_signals(clause, follow_up))
    return out


def classify(progress_text: str | None, ongoing_task: bool) -> Completion:
    """The completion state of one (round, unit, task) from its latest progress text.

    ``ongoing_task``: the task has no due date (长期坚持); such a task reported as carried on is ``ongoing``.
    """
    text = (progress_text or "").strip()[:MAX_PROGRESS_CHARS]
    if _BLANK.fullmatch(text):
        return Completion(NOT_REPORTED, "未填写进展")
    text = _normalize(text, MAX_PROGRESS_CHARS, progress=True)
    signals = _signals(text)

    def first(kind: str) -> str | None:
        return next((_quote(p) for s, p in signals if s == kind), None)

    done, period, open_, not_started = first(_S_DONE), first(_S_PERIOD), first(_S_OPEN), first(_S_NOT_STARTED)
    carried, started = first(_S_CARRIED), first(_S_STARTED)
    something_else = done or period or open_ or carried or started

    if done and not open_ and not not_started:
        return Completion(DONE, f"含「{done}」")
    if not_started and not something_else:
        return Completion(NOT_STARTED, f"含「{not_started}」")
    if ongoing_task:
        words = period or open_ or carried or started or done or not_started
        return Completion(ONGOING, f"长期任务，含「{words}」" if words else "长期任务，已填报进展")
    if open_:
        return Completion(IN_PROGRESS, f"含「{done}」，但也含「{open_}」" if done else f"含「{open_}」")
    if not_started:
        return Completion(IN_PROGRESS, f"含「{something_else}」，但也含「{not_started}」")
    if period:
        return Completion(IN_PROGRESS, f"仅完成阶段性任务「{period}」")
    if carried:
        return Completion(IN_PROGRESS, f"含「{carried}」，有完成时限的任务按推进中计")
    if started:
        return Completion(IN_PROGRESS, f"含「{started}」")
    return Completion(IN_PROGRESS, "已填报进展，但未见「已完成」等完成表述")


def classify_task(progress_text: str | None, due: DueDate) -> Completion:
    """classify() for a task whose due date has been read: ongoing when it has none by design."""
    return classify(progress_text, due.is_ongoing)


def is_overdue(due: DueDate, completion: Completion, today: date) -> bool:
    """未按时完成: the due date has passed (the due day itself is still in time) and the task is not done.

    A task without a date (ongoing or unreadable) is never overdue. A blank text (not_reported) past the due
    date is overdue too: not having reported is deducted separately, as a missing report.
    """
    return due.date is not None and today > due.date and completion.state != DONE
