"""`qwen-auth add-key` checks the key against its base once (GET {base}/models, answered here by httpx's
MockTransport: no network) and says what it reached, in one line that never holds the key; the account is
saved whatever the check says. A Coding Plan or Token Plan endpoint gets its plan's terms, once."""

from __future__ import annotations

import httpx
import pytest

from qwen_gateway.cli import auth_keys as cli_keys
from qwen_gateway.upstream.dashscope.plans import PRESETS
from unit.cli.test_auth import entry, run  # noqa: F401  (run: the fixture, qwen-auth in the settings' folders)

PAYG_KEY = "sk-0123456789abcdef0123456789abcdef"
PLAN_KEY = "sk-sp-0123456789abcdef0123456789ab"
MODELS = ["qwen3-max", "qwen3-coder-plus", "qwen3.6-plus", "qwen-flash", "qwen3-vl-plus"]
REAL_CHECK = cli_keys.check_key


@pytest.fixture
def upstream(monkeypatch):
    """What the base answers (a handler: request -> response, or raises), and the requests it saw."""
    seen: list[httpx.Request] = []
    state = {"handler": lambda r: httpx.Response(200, json={"object": "list", "data": [
        {"id": m, "object": "model"} for m in MODELS]})}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return state["handler"](request)

    monkeypatch.setattr(cli_keys, "check_key",
                        lambda base, key: REAL_CHECK(base, key, transport=httpx.MockTransport(handler)))
    monkeypatch.setattr(cli_keys, "CONNECT_WAIT_S", 0.0)

    class Upstream:
        requests = seen

        @staticmethod
        def answer(h) -> None:
            state["handler"] = h
    return Upstream


def error(status: int, code: str, message: str = "refused") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "type": "invalid_request_error"}})


def raises(exc: Exception):
    def handler(_r):
        raise exc
    return handler


def test_a_working_key_is_checked_once_and_what_the_base_lists_is_said(run, settings, upstream):
    rc, out, err = run("add-key", "ds", "--preset", "dashscope-intl", "--key-stdin", stdin=PAYG_KEY + "\n")
    assert rc == 0 and err == ""
    [req] = upstream.requests
    assert (req.method, str(req.url)) == ("GET", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/models")
    assert req.headers["authorization"] == f"Bearer {PAYG_KEY}"
    assert out.splitlines()[-1] == ("Key check: the key works (pay-as-you-go, QwenCloud international (Singapore)); "
                                    "the base lists 5 models: qwen3-max, qwen3-coder-plus, qwen3.6-plus, …")
    assert entry(settings, "ds")["key"] == PAYG_KEY


def test_any_base_is_checked_and_a_short_list_shown_whole(run, settings, upstream, monkeypatch):
    upstream.answer(lambda r: httpx.Response(200, json={"data": [{"id": "qwen3-coder-plus"}]}))
    monkeypatch.setenv("EMU_KEY", PAYG_KEY)
    rc, out, err = run("add-key", "emu", "--base-url", "http://127.0.0.1:9999/v1/", "--key-env", "EMU_KEY")
    assert rc == 0 and err == "" and str(upstream.requests[0].url) == "http://127.0.0.1:9999/v1/models"
    assert out.splitlines()[-1] == "Key check: the key works; the base lists 1 model: qwen3-coder-plus"


def test_model_ids_that_would_drive_the_terminal_are_left_out(run, upstream):
    upstream.answer(lambda r: httpx.Response(200, json={"data": [{"id": "\x1b[2Jcleared"}, {"id": "qwen-plus"},
                                                                 {"id": 7}, "qwen-max"]}))
    rc, out, _ = run("add-key", "ds", "--preset", "dashscope-cn", "--key-stdin", stdin=PAYG_KEY + "\n")
    assert rc == 0 and out.splitlines()[-1].endswith("; the base lists 1 model: qwen-plus") and "\x1b" not in out


def test_a_refused_key_is_saved_and_the_refusal_gives_the_plan_advice_once(run, settings, upstream):
    upstream.answer(lambda r: error(401, "invalid_api_key", "Incorrect API key provided."))
    rc, out, err = run("add-key", "cp", "--preset", "coding-plan-intl", "--key-stdin", stdin=PAYG_KEY + "\n")
    assert rc == 0 and entry(settings, "cp")["key"] == PAYG_KEY  # kept: the user decides
    assert "Key check" not in out
    refusal = [ln for ln in err.splitlines() if "key check" in ln]
    assert refusal == ["Warning: key check: the base refused the key (HTTP 401 invalid_api_key): Coding Plan keys "
                       "start with sk-sp-; this one looks like a pay-as-you-go key, which the Coding Plan endpoint "
                       "refuses (401)."]
    assert err.count("Coding Plan keys start with sk-sp-") == 1  # the advice once, in the refusal's line


@pytest.mark.parametrize("status,code,said", [
    (401, "invalid_api_key", "a key works only with the base URL of its own plan and region"),
    (403, "AccessDenied", "Model Studio also answers 403 for an account in arrears or a model not enabled"),
])
def test_a_refusal_without_a_plan_mismatch_says_what_else_it_means(run, upstream, status, code, said):
    upstream.answer(lambda r: error(status, code))
    rc, _, err = run("add-key", "ds", "--preset", "dashscope-us", "--key-stdin", stdin=PAYG_KEY + "\n")
    assert rc == 0
    assert f"Warning: key check: the base refused the key (HTTP {status} {code}): {said}." in err.splitlines()


def test_an_unreachable_base_is_named_with_the_errors_class_and_reason(run, settings, upstream):
    upstream.answer(raises(httpx.ConnectError("[Errno -2] Name or service not known")))
    rc, out, err = run("add-key", "ds", "--preset", "dashscope-cn", "--key-stdin", stdin=PAYG_KEY + "\n")
    assert rc == 0 and entry(settings, "ds") is not None and "Added key account ds" in out
    assert err.splitlines() == ["Warning: key check: could not reach dashscope.aliyuncs.com (ConnectError: [Errno -2] "
                                "Name or service not known); the account is saved, the key unchecked."]


def test_a_key_no_header_can_carry_is_not_sent(run, upstream, monkeypatch):
    monkeypatch.setenv("ODD_KEY", "sk-é0123456789")  # pasted from a document with a typographic character
    rc, _, err = run("add-key", "odd", "--preset", "dashscope-intl", "--key-env", "ODD_KEY")
    assert rc == 0 and upstream.requests == [] and "é0123456789" not in err
    assert "Warning: key check: not sent: the key holds a character that is not ASCII, which no HTTP header " \
           "carries (the gateway could not send it either)." in err.splitlines()


def test_a_timeout_without_text_is_named_by_its_class(run, upstream):
    upstream.answer(raises(httpx.ReadTimeout("")))
    rc, _, err = run("add-key", "ds", "--preset", "dashscope-cn", "--key-stdin", stdin=PAYG_KEY + "\n")
    assert rc == 0 and "could not reach dashscope.aliyuncs.com (ReadTimeout); the account is saved" in err


def test_the_coding_plans_refusal_of_other_clients_is_not_taken_for_a_bad_key(run, upstream):
    upstream.answer(lambda r: httpx.Response(405, json={"error": "Coding Plan is currently only available for "
                                                                 "Coding Agents"}))
    rc, _, err = run("add-key", "cp", "--preset", "coding-plan", "--key-stdin", stdin=PLAN_KEY + "\n")
    assert rc == 0
    assert "Warning: key check: the Coding Plan answers HTTP 405 to clients it does not count as coding agents, " \
           "as it did to this check: the key itself is not judged." in err.splitlines()


def test_another_answer_is_inconclusive(run, upstream):
    upstream.answer(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    rc, _, err = run("add-key", "ds", "--preset", "dashscope-intl", "--key-stdin", stdin=PAYG_KEY + "\n")
    assert rc == 0 and "Warning: key check: inconclusive: GET https://dashscope-intl.aliyuncs.com/compatible-mode/" \
                       "v1/models answered HTTP 502." in err.splitlines()


def test_no_check_with_no_check_or_without_a_key(run, settings, upstream, monkeypatch):
    rc, out, err = run("add-key", "ds", "--preset", "dashscope-intl", "--key-stdin", "--no-check",
                       stdin=PAYG_KEY + "\n")
    assert rc == 0 and "check" not in (out + err).lower() and entry(settings, "ds")["key"] == PAYG_KEY
    monkeypatch.delenv("UNSET_KEY", raising=False)
    rc, out, err = run("add-key", "env", "--preset", "dashscope-intl", "--key-env", "UNSET_KEY")
    assert rc == 0 and "check" not in (out + err).lower() and "$UNSET_KEY is not set" in err
    assert upstream.requests == []


# Every way the check can end, with the key planted where a careless report would copy it.
LEAKY = [
    lambda r: httpx.Response(200, json={"data": [{"id": PLAN_KEY}]}),
    lambda r: error(401, PLAN_KEY, f"Incorrect API key provided: {PLAN_KEY}"),
    lambda r: error(403, f"x{PLAN_KEY}", PLAN_KEY),
    lambda r: httpx.Response(405, text=PLAN_KEY),
    lambda r: error(500, PLAN_KEY[3:]),
    raises(httpx.ConnectError(f"[Errno 111] refused for Bearer {PLAN_KEY}")),
    raises(httpx.ProxyError(f"407 for {PLAN_KEY}")),
    raises(UnicodeEncodeError("ascii", PLAN_KEY, 3, 4, "ordinal not in range(128)")),
]


@pytest.mark.parametrize("handler", LEAKY, ids=["listed", "401", "403", "405", "500", "connect", "proxy", "encode"])
def test_no_line_ever_holds_the_key(run, upstream, handler, monkeypatch):
    upstream.answer(handler)
    for args in (("--key-stdin",), ("--key-env", "THE_KEY")):
        monkeypatch.setenv("THE_KEY", PLAN_KEY)
        rc, out, err = run("add-key", "tp", "--preset", "token-plan-intl", *args, "--replace", stdin=PLAN_KEY + "\n")
        assert rc == 0
        for line in (out + err).splitlines():
            assert PLAN_KEY not in line and PLAN_KEY[6:] not in line and PLAN_KEY[3:] not in line, line
    tries = cli_keys.CONNECT_TRIES if handler is LEAKY[5] else 1  # a refused connection is tried again, briefly
    assert len(upstream.requests) == 2 * tries


@pytest.mark.parametrize("args,rule", [
    (("--preset", "coding-plan"), "coding agents only"),
    (("--preset", "coding-plan-intl"), "coding agents only"),
    (("--base-url", "https://coding.dashscope.aliyuncs.com/v1"), "coding agents only"),
    (("--preset", "token-plan-cn"), "interactive AI tools only"),
    (("--base-url", "https://token-plan.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1"),
     "interactive AI tools only"),
])
def test_a_plan_with_terms_gets_them_once_at_add_time(run, upstream, args, rule):
    rc, out, err = run("add-key", "p", *args, "--key-stdin", stdin=PLAN_KEY + "\n")
    notes = [ln for ln in (out + err).splitlines() if ln.startswith("Note:")]
    assert rc == 0 and len(notes) == 1 and rule in notes[0], out + err


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.startswith("dashscope")])
def test_pay_as_you_go_has_no_such_note(run, upstream, preset):
    rc, out, err = run("add-key", "p", "--preset", preset, "--key-stdin", stdin=PAYG_KEY + "\n")
    assert rc == 0 and "Note:" not in out + err


def test_the_check_respects_the_proxy_settings_as_httpx_does(monkeypatch):
    """No transport given: httpx's own, which reads HTTP(S)_PROXY / NO_PROXY (trust_env)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    check = REAL_CHECK("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", PAYG_KEY)
    # refused by the proxy's port on loopback, not a name look-up of the host: the proxy was asked
    assert check.status is None and "Connection refused" in check.error, check


def test_an_error_code_with_a_final_newline_is_not_repeated():
    check = cli_keys._answer(401, {"error": {"code": "invalid_api_key\n"}}, "", "sk-x")
    assert "invalid_api_key" not in repr(check)  # a code is shown on one line, or not at all


def test_a_key_names_its_provider_and_only_one_the_gateway_has(run, settings, upstream, monkeypatch):
    monkeypatch.setenv("GPU_KEY", "anything")
    rc, out, err = run("add-key", "gpu", "--provider", "selfhosted", "--base-url", "http://127.0.0.1:8000/v1",
                       "--key-env", "GPU_KEY", "--default-model", "Qwen/Qwen3-8B")
    assert rc == 0, err
    spec = entry(settings, "gpu")
    assert spec["provider"] == "selfhosted" and spec["default_model"] == "Qwen/Qwen3-8B"
    rc, _, err = run("add-key", "ds", "--preset", "dashscope-intl", "--key-env", "GPU_KEY")
    assert rc == 0 and "provider" not in entry(settings, "ds")  # DashScope's, unnamed as before
    for wrong in ("qwenweb", "openai"):
        rc, _, err = run("add-key", "x", "--provider", wrong, "--base-url", "http://h/v1", "--key-env", "GPU_KEY")
        assert rc != 0 and "--provider takes one of dashscope, selfhosted" in err


def test_presets_and_workspaces_are_the_named_providers_plans(run, settings, monkeypatch):
    """A preset or a workspace domain is a plan of the key's provider (its `Provider.plans`): a self-hosted server
    has none, so neither is taken for one."""
    monkeypatch.setenv("GPU_KEY", "anything")
    rc, _, err = run("add-key", "gpu", "--provider", "selfhosted", "--preset", "dashscope-intl", "--key-env", "GPU_KEY")
    assert rc != 0 and "--preset dashscope-intl: a selfhosted server has no such plan" in err
    rc, _, err = run("add-key", "gpu", "--provider", "selfhosted", "--workspace", "ws1", "--region", "cn-beijing",
                     "--key-env", "GPU_KEY")
    assert rc != 0 and "a selfhosted server has no workspaces" in err
    assert entry(settings, "gpu") is None  # refused before anything is saved
