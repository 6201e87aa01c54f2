"""mitmweb with the gateway: assembled streams, summaries, no secrets anywhere, replay, in a real browser.

mitmweb runs as the docs say: `web_password` as an argon2 hash, no `web_columns` (the gateway adds the
Comment column). The browser test writes its screenshot to a temporary folder; `scripts/screenshot.py`
runs it with $QWEN_SCREENSHOT_OUT set to regenerate docs/img/mitmweb-stream.png on purpose.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import argon2
import httpx
import pytest

from helpers.browser import chromium
from helpers.procs import free_port, mitmweb_api

pytestmark = pytest.mark.e2e
PASSWORD = "test-pass"
# The markers the gateway sets (✔ ok, ↪ retried, ✖ error) and the summary's section separator.
TEXT_GLYPHS = "\u2714\u21aa\u2716\u2503"


@pytest.fixture
def web(make_gateway, emu, oauth_home, tmp_path):
    port = free_port()
    dump = tmp_path / "flows.mitm"
    hashed = argon2.PasswordHasher().hash(PASSWORD)  # the form docs/mitmweb.md shows
    gw = make_gateway("web", tool="mitmweb", env=oauth_home["env"], args=(
        "--set", f"web_password={hashed}", "--set", f"web_port={port}", "--set", "web_host=127.0.0.1",
        "--set", f"save_stream_file={dump}"))
    # mitmweb checks the password once, then a signed cookie (kept by the client): one argon2 check
    api = mitmweb_api(gw, port, PASSWORD)
    yield gw, api, port, dump
    api.close()


def send_traffic(gw) -> None:
    import openai
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-key-visible-only-as-hint", max_retries=0)
    list(c.chat.completions.create(model="gpt-4o", stream=True,
                                   messages=[{"role": "user", "content": "show me in mitmweb"}]))
    with c.responses.stream(model="gpt-4o", input="and the responses API") as s:
        for _ in s:
            pass


def wait_flows(api, n: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        flows = [f for f in api.get("/flows").json() if f.get("comment")]
        if len(flows) >= n or time.monotonic() > deadline:
            return flows
        time.sleep(0.1)


def test_rest_shows_assembled_streams_and_summaries_without_secrets(web, emu, oauth_home):
    gw, api, _, dump = web
    send_traffic(gw)
    flows = wait_flows(api, 2)
    assert len(flows) == 2
    # the list tells a Responses call from a chat call: each flow keeps the client's method and path
    assert sorted((f["request"]["method"], f["request"]["path"]) for f in flows) == [
        ("POST", "/v1/chat/completions"), ("POST", "/v1/responses")]
    chat, responses = sorted(flows, key=lambda f: f["request"]["path"])
    assert "client: POST /v1/chat/completions" in chat["comment"]
    assert "client: POST /v1/responses" in responses["comment"]
    assert [f["marked"] for f in flows] == ["\u2714", "\u2714"]
    assert chat["comment"].startswith("gpt-4o → coder-model · acct default · 200")
    for f, expected, view in ((chat, "Echo: show me in mitmweb", "Qwen chat stream"),
                              (responses, "Echo: and the responses API", "Qwen responses stream")):
        content = api.get(f"/flows/{f['id']}/response/content/auto.json").json()
        assert content["view_name"] == view
        text = json.dumps(content)
        assert "assembled answer" in text and expected in text
    token = oauth_home["token"]
    everything = api.get("/flows").text + "".join(
        api.get(f"/flows/{f['id']}/{m}/content/raw.json").text for f in flows for m in ("request", "response"))
    everything += api.get("/options").text + api.get("/state").text
    assert token not in everything
    assert token not in gw.log()
    deadline = time.monotonic() + 5
    while not dump.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dump.exists() and token.encode() not in dump.read_bytes()
    assert b"sk-client-key-visible-only-as-hint" not in dump.read_bytes()


def test_hashed_password_and_the_comment_column_by_default(web):
    gw, api, port, _ = web
    assert api.get("/options").json()["web_columns"]["value"] == [
        "tls", "icon", "path", "method", "status", "size", "time", "comment"]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10) as other:
        assert other.get("/flows", headers={"Authorization": "Bearer wrong-pass"}).status_code == 403
        assert other.get("/flows", headers={"Authorization": f"Bearer {PASSWORD}"}).status_code == 200
    assert "plaintext password" not in gw.log()


def test_replay_reinjects_a_fresh_credential(web, emu):
    import openai
    gw, api, _, _ = web
    openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "replay me"}])
    (flow,) = wait_flows(api, 1)
    # mitmweb (tornado) wants the XSRF cookie echoed in a header on POSTs; any matching pair will do.
    r = api.post(f"/flows/{flow['id']}/replay", headers={"X-XSRFToken": "c0ffee",
                                                         "Cookie": "_mitmproxy_xsrf=c0ffee"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while len(emu.chat_requests()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    chats = emu.chat_requests()
    assert len(chats) == 2 and chats[1]["headers"]["authorization"] == chats[0]["headers"]["authorization"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        f = next(x for x in api.get("/flows").json() if x["id"] == flow["id"])
        if "replayed" in (f.get("comment") or ""):
            break
        time.sleep(0.1)
    assert f["response"]["status_code"] == 200 and "replayed" in f["comment"]


@pytest.mark.browser
def test_browser_shows_the_assembled_answer_and_summary(web, emu, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    gw, api, port, _ = web
    send_traffic(gw)
    with httpx.Client(trust_env=False, timeout=10) as c:  # a refusal too: its ✖ marker in the list
        assert c.post(gw.url + "/v1/chat/completions", content=b"{not json").status_code == 400
    assert len(wait_flows(api, 3)) == 3
    shot = tmp_path / "mitmweb-stream.png"
    with chromium(tmp_path / "chrome", size="2200,800") as driver:
        try:
            driver.get(f"http://127.0.0.1:{port}/?token={PASSWORD}")
            cells = WebDriverWait(driver, 20).until(lambda d: len(c := d.find_elements(
                By.CSS_SELECTOR, ".flow-table tbody td.col-path")) >= 3 and c)
            paths = [re.search(r"\S+://\S+", c.text).group(0) for c in cells]
            # the Path column shows the client's request as it called it (issue 32: whole answers read
            # https://127.0.0.1/v1/…, streams http://127.0.0.1:1/v1/…): the Responses call is not a chat call
            assert sorted(paths) == [f"{gw.url}/v1/chat/completions"] * 2 + [f"{gw.url}/v1/responses"], paths
            markers = sorted(m.text for m in driver.find_elements(By.CSS_SELECTOR, ".flow-table td.col-path .marker"))
            assert markers == ["\u2714", "\u2714", "\u2716"], markers
            headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, ".flow-table thead th")]
            assert "Comment" in headers, headers
            rendered = driver.execute_script(GLYPH_CHECK, TEXT_GLYPHS)
            assert all(rendered), dict(zip(TEXT_GLYPHS, rendered))
            next(c for c in cells if "/chat/completions" in c.text).click()  # open the streamed chat flow
            tab = WebDriverWait(driver, 20).until(lambda d: [t for t in d.find_elements(By.CSS_SELECTOR, "nav a, a")
                                                             if t.text.strip() == "Response"])
            tab[0].click()
            WebDriverWait(driver, 20).until(lambda d: "Echo: show me in mitmweb" in d.find_element(By.TAG_NAME,
                                                                                                     "body").text)
            body = driver.find_element(By.TAG_NAME, "body").text
            assert "assembled answer" in body and "gpt-4o → coder-model" in body
            # the Comment column has mitmweb's fixed 150 px (docs/mitmweb.md): the whole summary is in the
            # flow's Comment tab
            width = driver.execute_script("return document.querySelector('.flow-table td.col-comment')"
                                          ".getBoundingClientRect().width")
            assert 140 <= width <= 160, width
            summary = next(f["comment"] for f in api.get("/flows").json()
                           if f["request"]["path"] == "/v1/chat/completions" and "200" in (f.get("comment") or ""))
            next(t for t in driver.find_elements(By.CSS_SELECTOR, "nav a, a") if t.text.strip() == "Comment").click()
            WebDriverWait(driver, 20).until(lambda d: summary in d.find_element(By.TAG_NAME, "body").text)
            next(t for t in driver.find_elements(By.CSS_SELECTOR, "nav a, a") if t.text.strip() == "Response").click()
            driver.execute_script(WIDEN_LIST, 1620)  # room for the Comment column in the picture
            time.sleep(0.5)
            driver.save_screenshot(str(shot))
        except Exception:
            driver.save_screenshot(str(tmp_path / "failure.png"))
            print("page text:", driver.find_element(By.TAG_NAME, "body").text[:3000])
            raise
    assert shot.stat().st_size > 10_000
    out = os.environ.get("QWEN_SCREENSHOT_OUT")  # only scripts/screenshot.py sets it
    if out:
        shutil.copyfile(shot, Path(out))


# For the picture: drag mitmweb's list/detail splitter (as its Splitter component does: flex on the
# list's side) and give the Comment column most of the list (mitmweb's columns cannot be resized by hand).
WIDEN_LIST = """
const s = document.querySelector('.splitter-x');
s.previousElementSibling.style.flex = '0 0 ' + arguments[0] + 'px';
const style = document.createElement('style');
style.textContent = '.flow-table .col-comment { width: 52%; }';
document.head.appendChild(style);
window.dispatchEvent(new Event('resize'));
"""

# Whether each character is drawn with a real glyph in the flow list's font: text drawn on a canvas in
# that font, compared with a code point no font has (U+10FFFD, private use): a missing glyph draws the
# same box (or nothing) as that one. Chromium picks fallback fonts through fontconfig, as for the page.
GLYPH_CHECK = """
const family = getComputedStyle(document.querySelector('.flow-table td')).fontFamily;
function draw(text) {
  const c = document.createElement('canvas'); c.width = 64; c.height = 64;
  const g = c.getContext('2d'); g.font = '40px ' + family; g.fillStyle = '#000';
  g.fillText(text, 8, 48); return c.toDataURL();
}
const missing = draw('\\u{10FFFD}'), blank = draw('');
return [...arguments[0]].map(ch => { const d = draw(ch); return d !== missing && d !== blank; });
"""
