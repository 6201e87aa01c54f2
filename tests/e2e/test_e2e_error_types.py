"""Errors in each API's own words, read by the real SDKs from a real mitmdump (issue 51, items 4 and 5):

- openai-python: Qwen's 5xx is `server_error` (it was Anthropic's `api_error`), a refusal no retry can fix is
  given up after one request with the SDK's own retries on (`x-should-retry: false`).
- the anthropic SDK: Qwen's 503 is Anthropic's 529 `overloaded_error` (OverloadedError), its 504
  `timeout_error` (GatewayTimeoutError), a timeout inside a stream `timeout_error`; with no account configured
  the SDK asks once, not three times.

docs/compatibility.md's tables are checked row by row by tests/repo/test_docs_errors.py (raw HTTP).
"""

from __future__ import annotations


import httpx
import openai
import pytest

from helpers.home import Home
from helpers.procs import Gateway
from helpers.team import ANTHROPIC_PYTHON, MESSAGE, NO_ANTHROPIC, anthropic_run

pytestmark = pytest.mark.e2e
needs_anthropic = pytest.mark.skipif(not ANTHROPIC_PYTHON.exists(), reason=NO_ANTHROPIC)
HI = [{"role": "user", "content": "hi"}]


def _gateway(emulator, home, accounts: bool = True) -> Gateway:
    gateway_home = Home(home, emulator)
    if accounts:
        gateway_home.key("emu", default_model="qwen3-coder-plus")
    return Gateway(home / "gw", env=gateway_home.env()).start()


@pytest.fixture(scope="module")
def gw(emulator, tmp_path_factory):
    g = _gateway(emulator, tmp_path_factory.mktemp("types"))
    yield g
    g.stop()


@pytest.fixture(scope="module")
def empty_gw(emulator, tmp_path_factory):
    """No account configured."""
    g = _gateway(emulator, tmp_path_factory.mktemp("no-accounts"), accounts=False)
    yield g
    g.stop()


def client(gw: Gateway, seen: list | None = None, retries: int = 0) -> openai.OpenAI:
    hooks = {"response": [seen.append]} if seen is not None else {}
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=retries, timeout=30,
                         http_client=httpx.Client(trust_env=False, event_hooks=hooks))


def test_openai_python_reads_qwens_5xx_as_server_error(gw, emu):
    emu.fault("server500")
    with pytest.raises(openai.InternalServerError) as e:
        client(gw).chat.completions.create(model="gpt-4o", messages=HI)
    assert e.value.status_code == 500 and e.value.type == "server_error"
    emu.fault("midstream504", count=3)  # each continuation breaks too: the stream's error after two
    with pytest.raises(openai.APIError) as e:
        for _ in client(gw).chat.completions.create(model="gpt-4o", messages=HI, stream=True):
            pass
    assert e.value.type == "server_error"  # inside the stream too


def test_openai_python_gives_up_at_once_on_what_no_retry_fixes(empty_gw):
    seen: list[httpx.Response] = []
    with pytest.raises(openai.InternalServerError) as e:
        client(empty_gw, seen, retries=2).chat.completions.create(model="gpt-4o", messages=HI)
    assert e.value.status_code == 503 and e.value.code == "no_usable_account"
    assert "qwen-auth add-key" in e.value.message
    assert len(seen) == 1  # the SDK's two retries not spent


@needs_anthropic
def test_the_anthropic_sdk_reads_overload_and_timeouts_in_anthropics_words(gw, emu):
    emu.fault("server503")
    emu.fault("timeout504")
    emu.fault("midstream504", count=3)  # each continuation breaks too: the stream's error after two
    run = anthropic_run(gw.url, "client-key", [{"op": "create", "params": MESSAGE},
                                              {"op": "create", "params": MESSAGE},
                                              {"op": "stream", "params": MESSAGE}])
    overloaded, timeout, in_stream = (o["raised"] for o in run["result"])
    assert (overloaded["class"], overloaded["status"], overloaded["type"]) == ("OverloadedError", 529,
                                                                              "overloaded_error")
    assert (timeout["class"], timeout["status"], timeout["type"]) == ("GatewayTimeoutError", 504, "timeout_error")
    assert in_stream["body"]["error"]["type"] == "timeout_error", in_stream


@needs_anthropic
def test_the_anthropic_sdk_asks_once_with_no_account_configured(empty_gw):
    run = anthropic_run(empty_gw.url, "client-key", [{"op": "create", "params": MESSAGE}], max_retries=2)
    raised = run["result"][0]["raised"]
    assert raised["status"] == 503 and "No Qwen account is configured" in raised["message"]
    assert [x["status"] for x in run["http"]] == [503]  # not retried


# ---- a misspelt model: the nearest real names (issue 51, item 5) -----------------------------------------------

MISSPELT = "qwen3-coder-pluss"


def test_a_misspelt_model_is_refused_with_the_nearest_real_names(gw, emu):
    """openai-python: Qwen's bare 400 ("does not exist") became OpenAI's 404 model_not_found naming what exists."""
    seen: list[httpx.Response] = []
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as e:
            client(gw, seen, retries=2).chat.completions.create(model=MISSPELT, messages=HI, stream=stream)
        assert (e.value.code, e.value.param, e.value.type) == ("model_not_found", "model", "invalid_request_error")
        assert f"The model `{MISSPELT}` does not exist" in e.value.message
        assert "Did you mean `qwen3-coder-plus`" in e.value.message, e.value.message
    with pytest.raises(openai.NotFoundError) as e:
        client(gw).models.retrieve(MISSPELT)
    assert "Did you mean `qwen3-coder-plus`" in e.value.message, e.value.message
    assert len(seen) == 2  # one request each


@needs_anthropic
def test_the_anthropic_sdk_reads_a_misspelt_model_as_not_found_with_the_nearest_names(gw, emu):
    run = anthropic_run(gw.url, "client-key", [{"op": "create", "params": {**MESSAGE, "model": MISSPELT}},
                                              {"op": "stream", "params": {**MESSAGE, "model": MISSPELT}}])
    for outcome in run["result"]:
        raised = outcome["raised"]
        assert (raised["class"], raised["status"], raised["type"]) == ("NotFoundError", 404, "not_found_error")
        assert "Did you mean `qwen3-coder-plus`" in raised["message"], raised
