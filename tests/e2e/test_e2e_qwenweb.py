"""Web accounts serving requests (issue #24 items 2, 4, 6): a browser session minted by the emulator and imported
as `qwen-auth add-web` stores it, a real gateway opted in with `--set qwen_web_accounts=true`, the openai SDK.
The gateway makes each request a new chat (`chats/new`, cookie-only) and one completion (Bearer + jar), and
turns the frames back into chat chunks; the HTTP-200 envelopes and punish pages become the client's errors."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from qwen_gateway.accounts import WEB
from qwen_gateway.auth import web_cookies as wc, web_session as ws
from qwen_gateway.auth.registry import Registry
from qwen_gateway.settings.auth import AuthSettings

pytestmark = pytest.mark.e2e

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/151.0.0.0 Safari/537.36"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


class Web:
    def __init__(self, emu, gw, minted: dict) -> None:
        self.emu, self.gw, self.minted = emu, gw, minted
        self.client = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=30)

    def admin(self, name: str, **body):
        return self.emu.admin("POST", f"web/{name}", body)

    def requests(self, path: str) -> list[dict]:
        return [r for r in self.emu.requests() if path in r["path"]]

    def sent(self) -> list[dict]:
        """The completion bodies the emulator received."""
        return [r["body"] for r in self.requests("/api/v2/chat/completions")]

    def secrets(self) -> list[str]:
        jar = self.minted["cookies"]
        return [self.minted["access_token"], self.minted["refresh_token"], jar["ssxmod_itna"], jar["acw_tc"],
                "bx-ua-secret-value"]

    def ask(self, text: str = "hi", **kw):
        return self.client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}], **kw)


@pytest.fixture
def web(make_gateway, emu, home):
    return start_web(make_gateway, emu, home)


def start_web(make_gateway, emu, home, *args: str) -> Web:
    """A web account minted by the emulator, imported, and a gateway opted in (with `args` more options). The
    emulator's logins are left alone: other modules' gateways share them."""
    tmp, env = home
    minted = emu.admin("POST", "web/session", {"expires_in": 3600})
    settings = AuthSettings.from_env(qwen_dir=tmp / ".qwen", state_dir=tmp / "state")
    session = ws.new_session(minted["access_token"], wc.keep(wc.parse_header(minted["cookie_header"])),
                             user_agent=UA, bx={"bx-v": "2.5.36", "bx-ua": "bx-ua-secret-value"})
    ws.save(settings.web_session_path("chat"), session)
    Registry(settings).put({"name": "chat", "kind": WEB})
    env = {**env, "QWEN_WEB_BASE_URL": emu.url, "QWEN_WEB_AUTH_BASE_URL": emu.url, "QWEN_ACCOUNTS_CHECK_S": "0"}
    gw = make_gateway("web", env=env, args=("--set", "qwen_web_accounts=true", "--set", "qwen_debug_log=true",
                                              "--set", "qwen_web_min_interval=0", *args))
    web = Web(emu, gw, minted)
    web.state = tmp / "state"
    return web


def test_a_whole_chat_answer_from_a_web_account(web):
    r = web.ask("hi")
    msg = r.choices[0].message
    assert msg.content == "Echo: hi" and r.choices[0].finish_reason == "stop"
    assert msg.model_extra.get("reasoning_content") == "Thinking about: hi"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.model == "gpt-4o"
    new, = web.requests("/api/v2/chats/new")
    assert "authorization" not in new["headers"]  # a cookie-only route
    comp, = web.requests("/api/v2/chat/completions")
    assert comp["headers"]["authorization"] == "<redacted>" and comp["headers"]["version"]
    body = comp["body"]
    assert body["chat_id"] == body["chatId"] and comp["path"].endswith(f"chat_id={body['chat_id']}")
    assert body["parent_id"] is None and len(body["messages"]) == 1
    assert body["feature_config"]["output_schema"] == "phase"


def test_a_streamed_answer_arrives_as_chunks(web):
    web.admin("switches", reply="one two three four")
    stream = web.ask("hi", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(texts) == "one two three four" and len(texts) >= 4
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_history_is_flattened_into_one_new_chat(web):
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "Echo: first"}, {"role": "user", "content": "second"}]
    r = web.client.chat.completions.create(model="qwen3.7-max", messages=messages)
    assert r.choices[0].message.content.startswith("Echo: Be terse.")
    body, = web.sent()
    text = body["messages"][0]["content"]
    assert body["model"] == "qwen3.7-max" and body["parent_id"] is None
    assert text.index("Be terse.") < text.index("User: first") < text.index("Assistant: Echo: first") \
        < text.index("User: second")


def test_responses_on_a_web_account(web):
    r = web.client.responses.create(model="gpt-4o", input="hello there")
    assert r.output_text == "Echo: hello there" and r.status == "completed"
    events = [e.type for e in web.client.responses.create(model="gpt-4o", input="hey", stream=True)]
    assert events[0] == "response.created" and events[-1] == "response.completed"


def test_a_tool_round_trip(web):
    web.admin("switches", tool_call={"name": "get_weather", "arguments": {"city": "Paris"}})
    r = web.ask("weather in Paris?", tools=TOOLS)
    call, = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content in (None, "")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert "get_weather" in web.sent()[0]["messages"][0]["content"]  # the tools, described in the prompt
    # streamed: the tags arrive split across frames, the call still comes out whole
    chunks = list(web.ask("weather in Paris?", tools=TOOLS, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [d.function.name for d in deltas] == ["get_weather"] and deltas[0].id.startswith("call_")
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    # the result goes back as text on the next turn
    web.admin("switches", tool_call=None, reply="It is sunny.")
    messages = [{"role": "user", "content": "weather in Paris?"}, r.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    again = web.client.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
    assert again.choices[0].message.content == "It is sunny."
    text = web.sent()[-1]["messages"][0]["content"]
    assert f"Tool result ({call.id}): sunny, 21 C" in text and '"get_weather"' in text


def test_rate_limited_is_a_429_with_retry_after_and_the_account_cools_down(web):
    web.admin("fault", kind="rate_limited", num=3)
    with pytest.raises(openai.RateLimitError) as e:
        web.ask()
    assert e.value.response.headers["retry-after"] == str(3 * 3600)
    assert "Qwen Chat: You've reached the upper limit for today's usage. Try again in 3 h." in e.value.message
    assert e.value.response.headers["x-should-retry"] == "false"  # hours away: the SDKs must not sleep on it
    before = len(web.sent())
    with pytest.raises(openai.RateLimitError):
        web.ask()  # cooling down: not sent again
    assert len(web.sent()) == before


def test_unauthorized_refreshes_once_and_retries(web):
    web.admin("fault", kind="unauthorized")
    assert web.ask().choices[0].message.content == "Echo: hi"
    assert web.emu.admin("GET", "web/state")["stats"]["refresh_calls"] == 1


def test_a_revoked_session_gets_one_refresh_then_needs_a_login(web):
    web.admin("revoke", session=web.minted["session"])
    with pytest.raises(openai.AuthenticationError) as e:
        web.ask()
    assert "qwen-auth add-web" in e.value.message
    assert web.emu.admin("GET", "web/state")["stats"]["refresh_calls"] == 1  # one refresh, refused
    sent = len(web.sent())
    with pytest.raises(openai.AuthenticationError) as e:
        web.ask()  # needs a login now: neither sent nor refreshed again
    assert e.value.body["code"] == "qwen_login_required" and "add-web chat --replace" in e.value.message
    assert web.emu.admin("GET", "web/state")["stats"]["refresh_calls"] == 1 and len(web.sent()) == sent


@pytest.mark.parametrize("style", ["waf", "html", "json"])
def test_a_punish_page_is_a_503_and_parks_the_account(web, style):
    web.admin("fault", kind="punish", style=style)
    with pytest.raises(openai.InternalServerError) as e:
        web.ask()
    assert e.value.status_code == 503 and "fresh browser login" in e.value.message
    sent = len(web.sent())
    assert sent == 1  # never retried
    with pytest.raises(openai.APIStatusError):
        web.ask()
    assert len(web.sent()) == sent  # parked: nothing more goes to Qwen Chat
    row = httpx.get(web.gw.url + "/health", trust_env=False).json()["accounts"][0]
    assert row["state"] == "needs_login" and row["last_punish"]


def test_bad_request_and_in_stream_errors_are_clear_502s(web):
    web.admin("fault", kind="bad_request", details="Something wrong with request!")
    with pytest.raises(openai.APIStatusError) as e:
        web.ask()
    assert e.value.status_code == 502 and "Something wrong with request!" in e.value.message
    web.admin("fault", kind="stream_error", after=2)
    with pytest.raises(openai.APIStatusError) as e:
        web.ask()
    assert e.value.status_code == 502 and "Internal error!" in e.value.message


def test_legacy_completions_and_messages_on_a_web_account(web):
    r = web.client.completions.create(model="gpt-4o", prompt="say hi")
    assert r.choices[0].text == "Echo: say hi"
    m = httpx.post(web.gw.url + "/v1/messages", trust_env=False, timeout=30,
                   headers={"x-api-key": "client-key", "anthropic-version": "2023-06-01"},
                   json={"model": "claude-sonnet-4-5", "max_tokens": 100, "system": "Be brief.",
                         "messages": [{"role": "user", "content": "hello"}]})
    assert m.status_code == 200, m.text
    text = [b["text"] for b in m.json()["content"] if b["type"] == "text"]
    assert text == ["Echo: Be brief.\n\nhello"]


def test_no_secret_in_the_log_the_debug_log_or_the_emulator_log(web):
    web.ask()
    list(web.ask(stream=True))
    for _ in range(100):  # the debug log is written by a thread after the answer: wait for both files
        logs = sorted((web.state / "logs").glob("*.json"))
        if len(logs) == 2:
            break
        time.sleep(0.1)
    assert len(logs) == 2
    debug = "".join(p.read_text() for p in logs)
    assert '"cookie": "<redacted>"' in debug.lower() and '"bx-ua": "<redacted>"' in debug.lower()
    text = web.gw.log() + debug + json.dumps(httpx.get(web.gw.url + "/health", trust_env=False).json())
    assert [s for s in web.secrets() if s in text] == []
    assert [s for s in web.secrets() if s in json.dumps(web.emu.requests())] == []
