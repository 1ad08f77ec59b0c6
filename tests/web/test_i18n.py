# ruff: noqa: RUF001  (expected Chinese text: full-width punctuation is correct there)
"""Languages of the console (issue 19 item 1): English and Simplified Chinese.

* the language from Accept-Language and the fss_lang cookie the switch sets;
* extraction: every string templates mark with _("...") and scripts with t("...") /
  tn("...", "..."), every API error text and every status name has a zh-CN entry, and the
  catalog holds nothing no page uses (a renamed source text leaves no stale entry);
* every page rendered by the server in zh-CN has no English word in its text outside the
  allowlist, and its <html lang>; the same pages in English;
* API errors carry a code and params the console renders in its language, the English
  ``error`` line unchanged for scripts.

The browser test (tests/web/browser/test_languages.py) does the same on the filled pages.
"""

from __future__ import annotations

import ast
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from web_helpers import T0, add_group

from fss.domain.alerts import RULES
from fss.domain.schedule import Schedule
from fss.domain.status import SHOWN_NAMES
from fss.store.health import PROBLEM_TEXTS
from fss.web import i18n
from fss.web.i18n.errors import ERROR_TEXTS
from fss.web.i18n.schedule_zh import schedule_words_zh
from fss.web.i18n.sentences import SENTENCES

# Pages and errors do not differ by backend: SQLite only.
SQLITE = pytest.mark.parametrize("web_db", ["sqlite"], indirect=True)

TEMPLATES = Path(i18n.TEMPLATES_DIR)
STATIC = Path(i18n.STATIC_DIR)
ZH = i18n.catalog(i18n.CHINESE)

# Words that stay as they are in a Chinese page: product and protocol names, units, ids.
ALLOWED_WORDS = frozenset([
    "fss", "Celery", "API", "CSV", "JSON", "UTC", "HTTP", "HTTPS", "Basic", "Bearer", "ID", "PID",
    "IP", "ms", "cron", "Cron", "English",
    "TLS", "URL", "Webhook", "webhook", "Slack", "DingTalk", "WeCom", "Feishu",
    "SMTP", "GMT", "Quartz", "ISO", "Redis", "PostgreSQL", "MariaDB", "SQLite", "RabbitMQ",
    "Web", "STARTTLS",
])
# Identifiers (run_count, report.build, least_busy) are names, not words: one token, skipped.
# API values shown beside their words, so an operator finds them in the CLI and the API:
# overlap and route policies ("skip" after its Chinese words) and alert rule names.
ALLOWED_WORDS |= {"skip", "replace", "failover", "broadcast", "sticky", "hung"}
WORD = re.compile(r"[A-Za-z][\w'.@-]*[A-Za-z0-9]")


def test_accept_language() -> None:
    pick = i18n.from_accept_language
    for header in ("zh", "zh-CN", "zh-Hans", "zh-SG", "zh-cn,zh;q=0.9", "zh-Hans-CN",
                   "fr;q=1, zh-CN;q=0.8", "en;q=0.5, zh;q=0.9"):
        assert pick(header) == "zh-CN", header
    for header in ("", "en", "en-US,en;q=0.9,zh-CN;q=0.8", "de", "zh-TW", "zh-Hant",
                   "zh;q=0", "*", "garbage;;q=x"):
        assert pick(header) == "en", header
    assert i18n.request_locale({"fss_lang": "en"}, "zh-CN") == "en"
    assert i18n.request_locale({"fss_lang": "zh-CN"}, "en-US") == "zh-CN"
    assert i18n.request_locale({"fss_lang": "klingon"}, "zh") == "zh-CN"


# ---- extraction ----------------------------------------------------------------------------

_JINJA_CALL = re.compile(r"""\b_\(\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")


def template_messages() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(TEMPLATES.glob("*.html")):
        for literal in _JINJA_CALL.findall(path.read_text(encoding="utf-8")):
            found.setdefault(ast.literal_eval(literal), []).append(path.name)
    return found


def script_messages() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(STATIC.glob("*.js")):
        for text in i18n.js_messages(path.read_text(encoding="utf-8")):
            found.setdefault(text, []).append(path.name)
    return found


def python_messages() -> set[str]:
    """Texts the server translates itself: status names, rule texts, role names, errors."""
    return {*SHOWN_NAMES.values(), *RULES.values(), *ERROR_TEXTS.values(), "admin", "viewer",
            *i18n.SERVER_TEXTS, *SENTENCES, *PROBLEM_TEXTS.values()}


def test_every_marked_string_has_a_chinese_entry() -> None:
    marked = {**template_messages(), **script_messages()}
    missing = {text: files for text, files in marked.items() if not ZH.get(text, "").strip()}
    missing.update({text: ["python"] for text in python_messages() if not ZH.get(text)})
    assert not missing, f"{len(missing)} strings without zh-CN: " + json.dumps(
        missing, ensure_ascii=False, indent=1)[:4000]


def test_catalog_has_no_stale_entries_and_keeps_parameters() -> None:
    used = set(template_messages()) | set(script_messages()) | python_messages()
    stale = sorted(set(ZH) - used)
    assert not stale, f"entries no page uses: {stale[:40]}"
    for source, text in ZH.items():
        assert set(re.findall(r"\{(\w+)\}", source)) == set(re.findall(r"\{(\w+)\}", text)), (
            f"parameters differ: {source!r} -> {text!r}")


def test_scripts_build_no_english_text() -> None:
    """Every text a script shows goes through t(): a string literal that reads like words
    outside t("...") fails here (selectors, class names, API paths and keys do not)."""
    literal = re.compile(r"""(?<![\w.])(?:"((?:[^"\\\n]|\\.)*)"|`((?:[^`\\]|\\.)*)`)""")
    code_like = re.compile(r"^[\w\-.:/#\[\]=\"'*>,()@ ?&${}+]*$")
    offenders = []
    for path in sorted(STATIC.glob("*.js")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("//", "/*", "*")):
                continue
            masked = re.sub(r"""\bt(?:n)?\(\s*"(?:[^"\\]|\\.)*"(?:\s*,\s*"(?:[^"\\]|\\.)*")?""",
                            "t(", line)
            for match in literal.finditer(masked):
                text = match.group(1) if match.group(1) is not None else match.group(2)
                plain = re.sub(r"\$\{[^}]*\}", "", text)
                words = bool(re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", plain)
                             and not code_like.match(plain))
                word = bool(re.fullmatch(r"[A-Z][a-z]+[.:]?", plain)
                            and plain not in SCRIPT_KEYWORDS)
                # A lone word shown as a badge, a toast or a cell's text.
                shown = bool(re.search(r"""\b(?:badge|toast|setText\([^,]*,)\s*\(?\s*["`]"""
                                       + re.escape(text), masked) and re.search("[a-z]{2}", plain))
                if words or word or shown:
                    offenders.append(f"{path.name}:{number}: {text}")
    assert not offenders, "\n".join(offenders[:60])


# Capitalised literals that are keys, not text (API values, event names, DOM names).
SCRIPT_KEYWORDS = frozenset({
    "None", "Scheduler", "Working", "Success", "Fail", "Accept", "Content-Type", "GET",
    "Information", "Warning", "Error", "Debug", "Trace", "Critical", "Enter", "Escape",
    "Webhook", "Slack",
})


# ---- pages rendered by the server ------------------------------------------------------------


class _Text(HTMLParser):
    """Text a reader sees or hears: text nodes, title/placeholder/aria-label/alt, minus code,
    scripts and the store's values (.mono, <code>, <pre>, <time>)."""

    SKIP = {"script", "style", "code", "pre", "template", "time", "datalist"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        skip = tag in self.SKIP or "mono" in (values.get("class") or "").split()
        if tag not in {"input", "meta", "link", "br", "img", "option", "source"}:
            self.stack.append(skip or (bool(self.stack) and self.stack[-1]))
        if (self.stack and self.stack[-1]) or skip:
            return
        for name in ("title", "placeholder", "aria-label", "alt"):
            if values.get(name):
                self.parts.append(values[name] or "")
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self.parts.append(values["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag not in {"input", "meta", "link", "br", "img", "option", "source"} and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]):
            self.parts.append(data)


def english_words(html: str, allowed: set[str]) -> list[str]:
    parser = _Text()
    parser.feed(html)
    text = " ".join(parser.parts)
    return sorted({w for w in WORD.findall(text) if w not in ALLOWED_WORDS and w not in allowed
                   and not re.search(r"[_.@-]", w)})


def page_paths(client: TestClient, group_id: int) -> list[str]:
    return ["/", "/groups", f"/groups/{group_id}", "/tasks", "/tasks/1", "/clients", "/nodes",
            "/alerts", "/alerts/targets", "/alerts/1", "/reports", "/audit", "/search?q=x",
            "/login", "/groups/0", "/no-such-page"]


@pytest.fixture
def group_id(web_db) -> int:  # type: ignore[no-untyped-def]
    return add_group(web_db.engine, T0, caption="nightly report", job_name="report.build")


@SQLITE
def test_every_page_in_chinese_has_no_english_text(admin_client: TestClient,
                                                   group_id: int) -> None:
    admin_client.post(f"/api/v1/groups/{group_id}/disable")  # an audit entry to show
    allowed = {"nightly", "report", "build", "admin", "testclient"}
    failures = {}
    for path in page_paths(admin_client, group_id):
        response = admin_client.get(path, headers={"Accept-Language": "zh-CN,zh;q=0.9",
                                                   "Accept": "text/html"})
        assert response.headers["content-type"].startswith("text/html"), path
        assert '<html lang="zh-CN">' in response.text, path
        words = english_words(response.text, allowed)
        if words:
            failures[path] = words
    assert not failures, failures


@SQLITE
def test_every_page_in_english(admin_client: TestClient, group_id: int) -> None:
    for path in page_paths(admin_client, group_id):
        response = admin_client.get(path, headers={"Accept-Language": "en-US",
                                                   "Accept": "text/html"})
        assert '<html lang="en">' in response.text, path
        assert not re.search(r"[\u4e00-\u9fff]", response.text.replace("中文", "")), path


@SQLITE
def test_switch_sticks_in_a_cookie(admin_client: TestClient) -> None:
    response = admin_client.get("/lang?to=zh-CN&next=/groups", follow_redirects=False,
                                headers={"Accept-Language": "en"})
    assert response.status_code == 303
    assert response.headers["location"] == "/groups"
    assert "fss_lang=zh-CN" in response.headers["set-cookie"]
    page = admin_client.get("/groups", headers={"Accept-Language": "en", "Accept": "text/html"})
    assert '<html lang="zh-CN">' in page.text and "任务组" in page.text
    assert admin_client.get("/lang?to=en&next=//evil.example", follow_redirects=False
                            ).headers["location"] == "/"
    english = admin_client.get("/groups", headers={"Accept-Language": "zh", "Accept": "text/html"})
    assert '<html lang="en">' in english.text


@SQLITE
def test_page_scripts_get_their_strings(admin_client: TestClient) -> None:
    page = admin_client.get("/groups", headers={"Accept-Language": "zh", "Accept": "text/html"})
    found = re.search(r'<script type="application/json" id="fss-i18n">(.*?)</script>',
                      page.text, re.S)
    assert found is not None
    data = json.loads(found[1])
    assert data["locale"] == "zh-CN"
    assert i18n.template_scripts("groups.html") == ("fss.js", "groupform.js", "groups.js")
    wanted = {text for script in ("fss.js", "groupform.js", "groups.js")
              for text in i18n.script_messages(script)}
    assert set(data["strings"]) == wanted & set(ZH)
    assert not set(i18n.script_messages("task.js")) - wanted & set(data["strings"])
    assert data["errors"]["too_long"] == ZH[ERROR_TEXTS["too_long"]]
    english = admin_client.get("/groups", headers={"Accept-Language": "en", "Accept": "text/html"})
    assert '"strings": {}' in english.text


# ---- API errors --------------------------------------------------------------------------------


@SQLITE
def test_api_errors_carry_a_code_the_console_translates(admin_client: TestClient,
                                                         group_id: int) -> None:
    long = admin_client.patch(f"/api/v1/groups/{group_id}", json={"caption": "x" * 65})
    assert long.status_code == 422
    body = long.json()
    assert body["error"].startswith("caption: ")  # English for scripts, as before
    assert body["code"] == "too_long" and body["params"] == {"field": "caption", "limit": "64"}
    cron = admin_client.patch(f"/api/v1/groups/{group_id}", json={"cron": "* * *"})
    assert cron.json()["code"] == "cron_fields", cron.json()
    assert cron.json()["params"]["count"] == "3"
    missing = admin_client.get("/api/v1/groups/999999")
    assert missing.json()["code"] == "group_not_found"
    assert missing.json()["params"] == {"group_id": "999999"}
    zone = admin_client.patch(f"/api/v1/groups/{group_id}", json={"time_zone": "Mars/Base"})
    assert zone.json()["code"] == "time_zone", zone.json()
    assert zone.json()["params"]["zone"] == "Mars/Base"


@SQLITE
def test_error_page_for_browsers_in_their_language(admin_client: TestClient) -> None:
    page = admin_client.get("/no-such-page", headers={"Accept": "text/html",
                                                      "Accept-Language": "zh-CN"})
    assert page.status_code == 404 and "未找到" in page.text
    api = admin_client.get("/no-such-page")
    assert api.json()["code"] == "http_404"


# ---- schedules in words ------------------------------------------------------------------------


@pytest.mark.parametrize(("schedule", "words"), [
    (Schedule(interval_ms=2000), "每 2 秒"),
    (Schedule(interval_ms=5_400_000), "每 1 小时 30 分钟"),
    (Schedule(), "由作业决定（否则每次运行后 30 秒）"),
    (Schedule(cron="30 2 * * *", time_zone="Asia/Shanghai"), "每天 02:30，Asia/Shanghai"),
    (Schedule(cron="*/15 * * * *"), "每 15 分钟，UTC"),
    (Schedule(cron="5,35 * * * *"), "每小时的第 5 和 35 分，UTC"),
    (Schedule(cron="0 9-17 * * MON-FRI"), "每周一至周五 9-17 点整，UTC"),
    (Schedule(cron="0 0 9,12,18 * * ?"), "每天 09:00、12:00 和 18:00，UTC"),
    (Schedule(cron="*/5 9-17 * * *"), "9-17 点内每 5 分钟，UTC"),
    (Schedule(cron="0 0 * * 5#3"), "每月第 3 个周五 00:00，UTC"),
    (Schedule(cron="0 0 12 ? JAN-MAR SAT,SUN"), "仅1月至3月 每周六和周日 12:00，UTC"),
    (Schedule(cron="61 * * * *"), "无法解析"),
])
def test_schedules_in_chinese_words(schedule: Schedule, words: str) -> None:
    assert schedule_words_zh(schedule) == words


@SQLITE
def test_the_api_says_schedules_in_the_consoles_language(admin_client: TestClient,
                                                         group_id: int) -> None:
    english = admin_client.get(f"/api/v1/groups/{group_id}").json()
    assert english["schedule_text"] == "every 1 min"
    chinese = admin_client.get(f"/api/v1/groups/{group_id}", headers={"Accept-Language": "zh"})
    assert chinese.json()["schedule_text"] == "每 1 分钟"
    listed = admin_client.get("/api/v1/groups", headers={"Cookie": "fss_lang=zh-CN"}).json()
    assert listed["items"][0]["schedule_text"] == "每 1 分钟"
    found = admin_client.get("/api/v1/search?q=nightly", headers={"Accept-Language": "zh-CN"})
    assert found.json()["groups"]["items"][0]["schedule_text"] == "每 1 分钟"
