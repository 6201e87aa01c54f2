"""mitmweb with the gateway: assembled streams, summaries, no secrets anywhere, replay, in a real browser."""

from __future__ import annotations

import json
import shutil
import socket
import time

import httpx
import openai
import pytest

from helpers.procs import ROOT

pytestmark = pytest.mark.e2e
PASSWORD = "test-pass"
SCREENSHOT = ROOT / "docs" / "img" / "mitmweb-stream.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web(make_gateway, emu, oauth_home, tmp_path):
    port = free_port()
    dump = tmp_path / "flows.mitm"
    gw = make_gateway("web", tool="mitmweb", env=oauth_home["env"], args=(
        "--set", f"web_password={PASSWORD}", "--set", f"web_port={port}", "--set", "web_host=127.0.0.1",
        "--set", f"save_stream_file={dump}",
        *[a for col in ("tls", "icon", "path", "method", "status", "size", "time", "comment")
          for a in ("--set", f"web_columns={col}")]))
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {PASSWORD}"},
                       trust_env=False, timeout=10)
    deadline = time.monotonic() + 20
    while True:
        try:
            if api.get("/flows").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.1)
    yield gw, api, port, dump
    api.close()


def send_traffic(gw) -> None:
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
    chat, responses = sorted(flows, key=lambda f: f["request"]["path"])
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


def test_replay_reinjects_a_fresh_credential(web, emu):
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
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.skip("Debian chromium/chromium-driver not installed (scripts/install-test-tools.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    gw, api, port, _ = web
    send_traffic(gw)
    assert len(wait_flows(api, 2)) == 2
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1800,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        driver.get(f"http://127.0.0.1:{port}/?token={PASSWORD}")
        rows = WebDriverWait(driver, 20).until(lambda d: [r for r in d.find_elements(
            By.CSS_SELECTOR, ".flow-table tbody tr") if "/chat/completions" in r.text])
        rows[0].find_elements(By.TAG_NAME, "td")[1].click()  # open the streamed chat flow
        tab = WebDriverWait(driver, 20).until(lambda d: [t for t in d.find_elements(By.CSS_SELECTOR, "nav a, a")
                                                         if t.text.strip() == "Response"])
        tab[0].click()
        WebDriverWait(driver, 20).until(lambda d: "Echo: show me in mitmweb" in d.find_element(By.TAG_NAME,
                                                                                                 "body").text)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "assembled answer" in body and "gpt-4o → coder-model" in body
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
    except Exception:
        driver.save_screenshot(str(tmp_path / "failure.png"))
        print("page text:", driver.find_element(By.TAG_NAME, "body").text[:3000])
        raise
    finally:
        driver.quit()
    assert SCREENSHOT.stat().st_size > 10_000
