"""What mitmproxy records of the gateway's flows (`-w` flow files, mitmweb), with real mitmweb processes:
every flow is recorded whatever string a client sent (a lone surrogate in `model` included), and no
client key is in any record — of a claimed flow, a pass-through the gateway refuses, or one it passes on."""

from __future__ import annotations

import http.server
import threading

import httpx
import pytest
from mitmproxy import io

from helpers.procs import free_port, mitmweb_api, until
from helpers.team import add_key, team_env

pytestmark = pytest.mark.e2e

PASSWORD = "records"


class Host(http.server.ThreadingHTTPServer):
    """A host the gateway does not answer for: answers 200 and keeps every request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                host.seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def host():
    h = Host()
    yield h
    h.shutdown()
    h.server_close()


def mitmweb(make_gateway, env, tmp_path, mode: str, *args: str):
    web_port = free_port()
    flows = tmp_path / "flows.mitm"
    gw = make_gateway("web", tool="mitmweb", mode=mode, env=env, args=(
        "-w", str(flows), "--set", f"web_password={PASSWORD}", "--set", f"web_port={web_port}",
        "--set", "web_host=127.0.0.1", *args))
    return gw, mitmweb_api(gw, web_port, PASSWORD), flows


def recorded(gw, flows) -> list:
    gw.stop()
    with open(flows, "rb") as f:
        return list(io.FlowReader(f).stream())


def test_a_lone_surrogate_in_the_model_is_recorded_and_shown(make_gateway, emu, oauth_home, tmp_path):
    gw, api, flows = mitmweb(make_gateway, oauth_home["env"], tmp_path, "reverse:https://portal.qwen.ai")
    body = b'{"model": "gpt-4o\\ud800", "messages": [{"role": "user", "content": "hi \\udfff"}]}'
    for stream in (b"false", b"true"):
        r = httpx.post(gw.url + "/v1/chat/completions", content=body[:-1] + b', "stream": ' + stream + b"}",
                       headers={"content-type": "application/json"}, timeout=20, trust_env=False)
        assert r.status_code == 200, r.text
    listed = until(lambda: [f for f in api.get("/flows").json() if f["type"] == "http"
                            and f.get("response")], "both flows shown", limit=20)
    assert len(listed) == 2
    assert api.get(f"/flows/{listed[0]['id']}/request/content/Auto.json").status_code == 200
    kept = recorded(gw, flows)
    assert len(kept) == 2 and all(f.response is not None for f in kept)
    assert kept[0].metadata["qwen"]["model"] == "gpt-4o\ufffd"
    assert "Traceback" not in gw.log() and "Error while writing" not in gw.log(), gw.log()[-2000:]


def test_no_client_key_in_a_record_of_a_refused_pass_through(make_gateway, emu, tmp_path, host):
    env = team_env(tmp_path, emu)
    key = add_key(env, "carol")
    gw, api, flows = mitmweb(make_gateway, env, tmp_path, "regular")
    with httpx.Client(proxy=gw.url, trust_env=False, timeout=20) as c:  # an explicit proxy, plain http
        refused = c.get(host.url + "/private", headers={"Authorization": f"Bearer {key}"})
        other = c.get(host.url + "/private", headers={"x-api-key": key})
        answered = c.post("http://api.openai.com/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == other.status_code == 403 and answered.status_code == 200
    assert host.seen == []
    shown = until(lambda: len(api.get("/flows").json()) >= 3 and api.get("/flows").text, "flows shown")
    assert key not in shown and key not in api.get("/flows/dump").content.decode("latin-1")
    kept = recorded(gw, flows)
    assert len(kept) == 3 and key.encode() not in flows.read_bytes()


def test_a_pass_through_never_carries_the_gateways_key_and_its_record_no_credential(make_gateway, emu, tmp_path,
                                                                                    host):
    env = team_env(tmp_path, emu)
    key = add_key(env, "dave")
    gw, api, flows = mitmweb(make_gateway, env, tmp_path, "regular", "--set", "qwen_allow_passthrough=true")
    with httpx.Client(proxy=gw.url, trust_env=False, timeout=20) as c:
        ours = c.get(host.url + "/a", headers={"Authorization": f"Bearer {key}"})
        theirs = c.get(host.url + "/b", headers={"Authorization": "Bearer their-own-token", "x-api-key": "theirs-2"})
    assert ours.status_code == theirs.status_code == 200
    # the gateway's key never leaves for another host; the host's own credentials reach it
    assert "authorization" not in host.seen[0] and key not in str(host.seen)
    assert host.seen[1]["authorization"] == "Bearer their-own-token" and host.seen[1]["x-api-key"] == "theirs-2"
    kept = recorded(gw, flows)
    raw = flows.read_bytes()
    assert len(kept) == 2 and key.encode() not in raw
    assert b"their-own-token" not in raw and b"theirs-2" not in raw  # sent, then out of the record
