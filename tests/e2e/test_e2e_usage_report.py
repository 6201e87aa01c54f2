"""`qwen-usage report` end to end: a real gateway (mitmdump) and the emulator serve a two-turn conversation of
whole answers, a stream (whose first byte the emulator delays) and an error; `qwen-usage report --out F` runs as a subprocess; F is
opened from disk in headless Chromium. The rendered page shows the ledger's numbers in its tables and SVG
charts, the cache doctor's conversations in its Conversations table, and the browser loads nothing: no resource at all, and its Content-Security-Policy refuses a request
made on purpose (a loopback server counts what reaches it: nothing).

The screenshot is written to a temporary folder; `scripts/screenshot.py usage-report` runs this test with
$QWEN_SCREENSHOT_OUT set to regenerate docs/img/usage-report.png on purpose.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from helpers import commands
from helpers.browser import chromium
from helpers.procs import BIN
from helpers.ledger import ledger_rows
from qwen_gateway.observe.ledger import FILENAME, Ledger

pytestmark = pytest.mark.e2e
DELAY_MS = 400  # the stream's first byte: the slowest first byte of the three



def wait_rows(state: Path, n: int) -> list[dict]:
    deadline = time.monotonic() + 20
    while len(rows := ledger_rows(state)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows


@pytest.fixture
def served(make_gateway, emu, oauth_home, tmp_path):
    """Four requests through a real gateway (the first two one conversation); the ledger's rows once written."""
    import openai
    state = tmp_path / "state"
    env = {**oauth_home["env"], "QWEN_GATEWAY_HOME": str(state)}
    gw = make_gateway("report", env=env)
    with httpx.Client(trust_env=False, timeout=30) as http_client:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client", max_retries=0, http_client=http_client)
        # a system prompt past Qwen's smallest cached prefix (256 tokens): shorter turns have no cache to doctor
        system = {"role": "system", "content": "You answer briefly and plainly. " * 60}
        opening = [system, {"role": "user", "content": "a whole answer"}]
        first = c.chat.completions.create(model="gpt-4o", messages=opening)
        c.chat.completions.create(model="gpt-4o", messages=[
            *opening, {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "and a second turn of the same conversation"}])
        emu.switches(first_byte_delay_ms=DELAY_MS)
        list(c.chat.completions.create(model="vision-model", stream=True, stream_options={"include_usage": True},
                                       messages=[system, {"role": "user", "content": "a stream, late to start"}]))
        emu.switches(first_byte_delay_ms=0)
        emu.fault("context400")
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "too long, says Qwen"}])
    rows = wait_rows(state, 4)
    assert [(r["upstream_model"], r["status"], r["stream"], r["error"]) for r in rows] == [
        ("coder-model", 200, 0, None), ("coder-model", 200, 0, None), ("vision-model", 200, 1, None),
        ("coder-model", 400, 0, "context_length_exceeded")], rows
    return env, state, rows


def run_report(env: dict, state: Path, out: Path) -> None:
    r = commands.run([BIN / "qwen-usage", "report", "--out", str(out), "--state-dir", str(state)],
                       timeout=30, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)


def sums(rows: list[dict], unpriced: bool = True) -> list[str]:
    """A row of the by-model and by-account tables, from the ledger: requests, prompt, completion, cached, cache
    writes, errors, unpriced (answers nothing priced: the emulator's OAuth login has no price)."""
    tokens = [f"{sum(r[k] or 0 for r in rows):,}" for k in ("prompt_tokens", "completion_tokens", "cached_tokens",
                                                            "cache_write_tokens")]
    counted = [str(len(rows)), *tokens, str(sum(r["status"] >= 400 or r["error"] is not None for r in rows))]
    return counted + [str(sum(r["cost_unit"] == "unpriced" for r in rows))] if unpriced else counted


def conversation(rows: list[dict]) -> list[str]:
    """A row of the Conversations table, from the ledger's rows of one conversation (all served, none missed)."""
    prompt, cached = sum(r["prompt_tokens"] for r in rows), sum(r["cached_tokens"] or 0 for r in rows)
    assert [r["cache_turn"] for r in rows] == list(range(1, len(rows) + 1)), rows
    assert not any(r["cache_miss"] for r in rows), rows
    first = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rows[0]["ts"]))
    hour = sum(1 for r in rows if (r["cache_ttl"] or 0) >= 3600)  # the turns that asked Qwen's hour
    return [rows[0]["conversation"][:12], first, str(len(rows)), str(hour), f"{prompt:,}", f"{cached:,}",
            f"{round(round(cached / prompt, 2) * 100)}%", "0", "0", "$0", ""]


def spent(rows: list[dict]) -> int:
    return sum((r["prompt_tokens"] or 0) + (r["completion_tokens"] or 0) for r in rows)


class Counting(http.server.BaseHTTPRequestHandler):
    """A loopback server the page must never reach."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        Counting.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def trap():
    Counting.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "chrome") as driver:
        yield driver


TABLE = "return [...document.querySelectorAll(arguments[0] + ' tbody tr')].map(tr => [...tr.cells].map(c => " \
        "c.textContent.trim()));"
SEGMENTS = """return [...document.querySelectorAll('#' + arguments[0] + ' rect.seg')].map(r => {
  const b = r.getBoundingClientRect();
  return [r.dataset.day, r.dataset.series, Number(r.dataset.value), b.width, b.height]; });"""
# A request made on purpose from the page (as an injected image or fetch would): the policy must refuse it.
PROBE = """
const [port, done] = [arguments[0], arguments[arguments.length - 1]];
const seen = [];
document.addEventListener('securitypolicyviolation', e => seen.push(e.violatedDirective));
const img = document.createElement('img'); img.src = 'http://127.0.0.1:' + port + '/img'; document.body.append(img);
fetch('http://127.0.0.1:' + port + '/fetch').then(() => 'loaded', e => 'refused').then(f =>
  setTimeout(() => done({fetch: f, seen: seen}), 300));
"""


@pytest.mark.browser
def test_report_renders_in_chromium_with_the_ledgers_numbers_and_no_network(served, browser, trap, tmp_path):
    from selenium.webdriver.common.by import By
    env, state, rows = served
    out = tmp_path / "page" / "usage-report.html"
    out.parent.mkdir()
    run_report(env, state, out)
    day, account = rows[0]["day"], rows[0]["account"]
    coder, vision = [rows[0], rows[1], rows[3]], [rows[2]]
    assert all(r["day"] == day and r["account"] == account for r in rows)
    shot = tmp_path / "usage-report.png"
    try:
        browser.get(out.as_uri())
        assert browser.title == "Qwen gateway usage"
        # tables: one day, two models, one account; the error with its code; the slow stream first
        assert browser.execute_script(TABLE, "#by-model") == [
            [day, "coder-model", *sums(coder)], [day, "vision-model", *sums(vision)], ["total", "", *sums(rows)]]
        assert browser.execute_script(TABLE, "#by-account") == [[day, account, *sums(rows)],
                                                                ["total", "", *sums(rows)]]
        assert browser.execute_script(TABLE, "#errors-by-day") == [
            [day, "4", "1", "25.0%", "context_length_exceeded ×1"]]
        first = browser.execute_script(TABLE, "#first-byte")
        assert [r[1:5] for r in first] == [["chat.completions", "vision-model", account, "200"]], first
        late = rows[2]["ttfb_ms"]  # the stream's, as the ledger has it
        assert late >= DELAY_MS and first[0][6] == (f"{late:.0f}ms" if late < 1000 else f"{late / 1000:.2f}s"), first
        slowest = browser.execute_script(TABLE, "#slowest")
        assert sorted(r[4] for r in slowest) == ["200", "200", "200", "400"]
        assert [r[7] for r in slowest if r[4] == "400"] == ["context_length_exceeded"]
        # charts: drawn (a size on screen) and holding the same numbers
        tokens = browser.execute_script(SEGMENTS, "chart-tokens-model")
        assert sorted(t[:3] for t in tokens) == [[day, "coder-model", spent(coder)], [day, "vision-model",
                                                                                      spent(vision)]], tokens
        assert all(t[3] > 10 and t[4] > 10 for t in tokens), tokens
        requests = browser.execute_script(SEGMENTS, "chart-requests-account")
        assert [t[:3] for t in requests] == [[day, account, 4]] and requests[0][4] > 50, requests
        errors = browser.execute_script(SEGMENTS, "chart-errors-day")
        assert sorted(t[1:3] for t in errors) == [["errors", 1], ["ok", 3]]
        assert errors[0][3] > 5 and all(t[4] > 5 for t in errors)
        # the cache doctor's conversations: the two turns as one, the stream another; the error is no turn
        assert rows[0]["conversation"] == rows[1]["conversation"] != rows[2]["conversation"], rows
        assert rows[3]["conversation"] is None, rows
        assert browser.execute_script(TABLE, "#conversations") == [conversation(rows[:2]),
                                                                   conversation(rows[2:3])]
        # nothing loaded: no script, no resource; the policy refuses what the page might try
        assert browser.execute_script("return document.scripts.length") == 0
        assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
        cards = {c.get_attribute("data-name"): c.text.split("\n")[0]
                 for c in browser.find_elements(By.CSS_SELECTOR, "#totals .card")}
        assert [cards[k] for k in ("requests", "prompt tokens", "completion tokens", "cached tokens", "cache writes",
                                   "errors")] \
            == sums(rows, unpriced=False), cards
        browser.save_screenshot(str(shot))
        browser.set_script_timeout(10)
        probe = browser.execute_async_script(PROBE, trap)
        assert probe["fetch"] == "refused" and "connect-src" in probe["seen"] and "img-src" in probe["seen"], probe
    except Exception:
        browser.save_screenshot(str(tmp_path / "failure.png"))
        print("page text:", browser.find_element(By.TAG_NAME, "body").text[:3000])
        raise
    assert Counting.hits == []
    assert shot.stat().st_size > 10_000
    target = os.environ.get("QWEN_SCREENSHOT_OUT")  # only scripts/screenshot.py sets it
    if target:
        shutil.copyfile(shot, Path(target))


def test_report_without_requests_says_so(oauth_home, tmp_path):
    """A ledger that exists but holds no request of the period: the page says so (and is still written)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    Ledger(state / FILENAME).close()  # created, as by a gateway that has not answered anything yet
    env = {**oauth_home["env"], "QWEN_GATEWAY_HOME": str(state)}
    out = tmp_path / "empty.html"
    run_report(env, state, out)
    text = out.read_text(encoding="utf-8")
    assert "No requests in this period." in text and "<svg" not in text
