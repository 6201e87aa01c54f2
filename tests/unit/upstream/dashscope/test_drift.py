"""DashScope's drift check behind `qwen-auth check` (upstream/dashscope/drift.py, drift_probes.py; the command:
cli/auth_check.py): the key's list against the catalogue and the
built-in prices, each difference's wording, the stream shape the gateway reads, and the --deep probes against a
stand-in Qwen (httpx.MockTransport): what each answer is read as, what was sent, and that the key is never said.
The real command against the emulator, drifted and not: tests/e2e/test_auth_check.py."""

from __future__ import annotations

import json

import httpx
import pytest

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.drift_report import Found, Report
from qwen_gateway.upstream.dashscope.drift import (bounds, compare_caps, compare_list, compare_prices, probe_model,
                                                   read_list, usd)
from qwen_gateway.upstream.dashscope.drift_probes import Prober, cache_prompt, cached_of, events, shape
from qwen_gateway.models.catalogue import chat_models, find, retired
from qwen_gateway.models.listed import ListedModel
from qwen_gateway.pricing.prices import Tier, builtin
from qwen_gateway.upstream.dashscope.headers import GATEWAY_AGENT

KEY_TEXT = "sk-unit-secret-key"
BASE = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"


def lines(report: Report) -> list[str]:
    return [f.line() for f in report.differences]


# ---- prices ---------------------------------------------------------------------------------------------------


def test_a_price_differs_past_half_a_percent_each_named_with_its_tier():
    ours = (Tier(32_000, 1.2, 6.0, cached=0.24), Tier(None, 2.4, 12.0, cached=0.48))
    near = (Tier(32_000, 1.205, 6.0, cached=0.24, name="Input<=32k"), Tier(None, 2.4, 12.0, 0.48, name="Input>32k"))
    report = Report("ds")
    assert compare_prices("m", ours, near, report) and report.differences == []  # 0.4 %: the same
    far = (Tier(32_000, 1.2, 6.1, cached=0.24, name="Input<=32k"), Tier(None, 2.4, 12.0, 0.5, name="Input>32k"))
    assert not compare_prices("m", ours, far, report)
    todo = ("the gateway uses Qwen's figure while it can read the list; correct the catalogue's price (used when the "
            "list cannot be read)")
    assert lines(report) == [f"DIFF m output price (Input<=32k): gateway assumes $6/M, Qwen says $6.1/M — {todo}",
                             f"DIFF m implicit cache read price (Input>32k): gateway assumes $0.48/M, Qwen says $0.5/M"
                             f" — {todo}"]


def test_what_a_tier_does_not_give_is_what_the_gateway_bills_for_it():
    """The explicit cache's read (10 %) and 5-minute write (125 %) follow the input price where a row gives none:
    the list's own figures at those shares are the same; an hour's write the gateway cannot price is a difference."""
    report = Report("ds")
    listed = (Tier(None, 2.0, 8.0, cache_read=0.2, cache_write=2.5),)
    assert compare_prices("m", (Tier(None, 2.0, 8.0),), listed, report) and report.differences == []
    assert not compare_prices("m", (Tier(None, 2.0, 8.0),), (Tier(None, 2.0, 8.0, cache_write_1h=4.0),), report)
    assert lines(report)[0].startswith("DIFF m 1-hour cache write price: gateway assumes unpriced, Qwen says $4/M — ")
    assert usd(0.1 * 3) == "$0.3/M"


def test_tiers_that_split_prompts_elsewhere_are_one_difference():
    report = Report("ds")
    ours = (Tier(256_000, 0.5, 3.0), Tier(None, 2.0, 6.0))
    theirs = (Tier(128_000, 0.5, 3.0), Tier(1_000_000, 2.0, 6.0))  # the top tier's own bound means "any prompt above"
    assert bounds(theirs) == (128_000,)
    assert not compare_prices("m", ours, theirs, report)
    assert [(f.what, f.gateway, f.qwen) for f in report.differences] == [
        ("m price tiers", "up to 256,000 / above", "up to 128,000 / above")]


# ---- caps and the list --------------------------------------------------------------------------------------


def test_caps_compare_what_the_gateway_holds_requests_to():
    report = Report("ds")
    assert compare_caps("qwen-plus", ListedModel("qwen-plus", max_output=16_384), report) is False
    assert lines(report) == ["DIFF qwen-plus output cap: gateway assumes 32,768, Qwen says 16,384 — the gateway uses "
                             "Qwen's figure while it can read the list; correct the catalogue's `output`"]
    # a cap the catalogue gives but does not apply (its sources predate the model) is no assumption: not compared
    assert find("qwen3.6-plus").output and compare_caps("qwen3.6-plus", ListedModel("qwen3.6-plus", max_output=7),
                                                        Report("ds")) is None


def test_the_list_against_the_catalogue_new_retired_and_left_out():
    report = Report("ds")
    served = [m for m in chat_models({"payg-intl"}) if retired(m) is None]
    listed = {m: ListedModel(m) for m in served if m != "qwen-plus"}
    listed["qwen9-ultra"] = ListedModel("qwen9-ultra")
    compare_list(listed, "payg:intl", False, report)
    assert lines(report) == [
        "DIFF qwen9-ultra: gateway assumes nothing (not in the catalogue), Qwen says listed — new: the gateway serves "
        "it with the list's facts",
        "DIFF qwen-plus: gateway assumes served on payg-intl, Qwen says not in this key's list — this key cannot call "
        "it; requests for it go to other accounts"]
    assert report.matched[0] == f"model list: {len(listed)} models read"
    gone = next(m for m in chat_models() if retired(m) is not None)
    report = Report("ds")
    compare_list({gone: ListedModel(gone)}, "", False, report)
    assert lines(report)[0].startswith(f"DIFF {gone}: gateway assumes retired after {find(gone).retires} (answered "
                                       "locally), Qwen says listed — ")
    assert report.skipped == ["prices and the plan's models: the gateway knows no plan of this host (billing unknown)"]
    assert len(report.differences) == 1  # an unknown plan leaves out nothing


def test_prices_the_catalogue_lacks_are_one_line_and_a_plan_in_requests_has_none():
    tier = (Tier(None, 1.0, 2.0, name="Default"),)
    report = Report("ds")
    compare_list({"qwen3.7-plus": ListedModel("qwen3.7-plus", tiers=tier),
                  "qwen-plus": ListedModel("qwen-plus", tiers=builtin().models["payg:intl"]["qwen-plus"])},
                 "payg:intl", False, report)
    assert "prices: 1 model as the catalogue's on payg:intl" in report.matched
    assert lines(report)[0] == (
        "DIFF prices of 1 model (qwen3.7-plus): gateway assumes unpriced (the catalogue has none on payg:intl), Qwen "
        "says priced — the gateway uses Qwen's figure while it can read the list; they are unpriced when it cannot")
    report = Report("ds")
    compare_list({"qwen-plus": ListedModel("qwen-plus", tiers=tier)}, "coding", False, report)
    assert report.skipped == ["prices: this plan is counted in requests, not money"]
    assert not [d for d in report.differences if "price" in d.what]


def test_the_probed_model():
    assert probe_model("qwen-max", "qwen-plus", None) == "qwen-max"
    assert probe_model(None, "qwen-plus", {}) == "qwen-plus"
    assert probe_model(None, None, None) == "qwen3.6-flash"
    assert probe_model(None, None, {"qwen9-x": ListedModel("qwen9-x"), "text-embedding-v4": ListedModel("t"),
                                    "qwen-plus": ListedModel("qwen-plus")}) == "qwen-plus"


def test_an_unreadable_list_and_a_paged_one():
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {KEY_TEXT}"
        assert request.headers["user-agent"] == GATEWAY_AGENT
        assert str(request.url).startswith("https://dashscope-intl.aliyuncs.com/api/v1/models?page_no=")
        n = int(request.url.params["page_no"])
        return httpx.Response(200, json={"output": {"total": 3, "models": [{"model": f"m{n}a"}, {"model": f"m{n}b"}]
                                                    if n == 1 else [{"model": "m2a"}]}})
    cred = Credential("ds", KEY, BASE, KEY_TEXT)
    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        listed, why = read_list(client, cred)
    assert (list(listed or {}), why) == (["m1a", "m1b", "m2a"], "")
    for status, body, said in ((500, b"{}", "HTTP 500"), (200, b"{cut", "not JSON"),
                               (200, b"[]", "not Model Studio's list"),
                               (200, b'{"output": {"total": 0, "models": []}}', "no models")):
        with httpx.Client(transport=httpx.MockTransport(Qwen((status, body)))) as client:
            assert read_list(client, cred) == (None, said)
    assert Found("Qwen's list could not be read (HTTP 500)", "", "", "the gateway uses the catalogue for this "
                 "account").line() == ("DIFF Qwen's list could not be read (HTTP 500): the gateway uses the catalogue "
                                       "for this account")


# ---- the stream's shape ---------------------------------------------------------------------------------------

FINISH = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}
USAGE = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}


def sse(*payloads) -> bytes:
    return b"".join(b"data: " + (p.encode() if isinstance(p, str) else json.dumps(p).encode()) + b"\n\n"
                    for p in payloads)


@pytest.mark.parametrize("payloads,missing", [
    ((FINISH, USAGE, "[DONE]"), []),
    ((FINISH, "[DONE]"), ["no usage chunk after the finish"]),
    ((USAGE, FINISH, "[DONE]"), ["no usage chunk after the finish"]),
    (({"choices": [{"delta": {"content": "ok"}, "finish_reason": None}]}, USAGE, "[DONE]"),
     ["no chunk with a finish_reason"]),
    ((FINISH, USAGE), ["no data: [DONE] at the end"]),
])
def test_the_stream_shape(payloads, missing):
    assert [m for m, _ in shape(events(sse(*payloads)))] == missing


# ---- the probes against a stand-in Qwen -------------------------------------------------------------------------


class Qwen:
    """Answers each chat request with the next of `answers` ((status, body bytes)); keeps what was sent."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers, self.sent = list(answers), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        status, body = self.answers.pop(0)
        return httpx.Response(status, content=body)


def refusal(message: str) -> tuple[int, bytes]:
    return 400, json.dumps({"error": {"code": "invalid_parameter_error", "message": message}}).encode()


def probe(model: str, *answers: tuple[int, bytes]) -> tuple[Prober, Report, Qwen]:
    qwen, report = Qwen(*answers), Report("ds")
    client = httpx.Client(transport=httpx.MockTransport(qwen))
    return Prober(client, Credential("ds", KEY, BASE, KEY_TEXT), model, find(model), report), report, qwen


def test_the_range_refusal_read_by_the_gateways_own_reader():
    p, report, qwen = probe("qwen-plus", refusal("<400> InternalError.Algo.InvalidParameter: Range of "
                                                 "max_completion_tokens should be [1, 32768]"))
    p.range_refusal(32_768, None)
    assert report.matched == ["qwen-plus output cap: Qwen refused 32,769 with [1, 32,768], as the gateway says"]
    sent = qwen.sent[0]
    assert json.loads(sent.content) == {"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}],
                                        "max_completion_tokens": 32_769, "stream": True, "enable_thinking": False}
    assert str(sent.url) == BASE + "/chat/completions" and sent.headers["user-agent"] == GATEWAY_AGENT
    assert sent.headers["authorization"] == f"Bearer {KEY_TEXT}" and sent.headers["x-dashscope-cachecontrol"] == "enable"
    p, report, _ = probe("qwen-plus", refusal("Range of max_completion_tokens should be [1, 8192]"))
    p.range_refusal(32_768, None)
    assert lines(report) == ["DIFF qwen-plus output cap: gateway assumes 32,768, Qwen says [1, 8,192] (its refusal) — "
                             "the gateway learns it from the first refused request; correct the catalogue's `output`"]
    p, report, _ = probe("qwen-plus", (200, sse(FINISH)))
    p.range_refusal(32_768, None)
    assert lines(report)[0].startswith("DIFF qwen-plus output cap: gateway assumes 32,768, Qwen says it took 32,769 — "
                                       "its cap is higher than the gateway assumes")
    assert report.uncounted and report.lines()[-1].endswith("and what the cut range probe generated (not reported)")
    p, report, qwen = probe("qwen9-x", refusal(f"frobnicate is wrong for key {KEY_TEXT}"))
    p.range_refusal(None, None)
    assert json.loads(qwen.sent[0].content)["max_completion_tokens"] == 10_000_000
    assert "enable_thinking" not in json.loads(qwen.sent[0].content)  # a model the catalogue does not know: as sent
    assert lines(report) == ["DIFF qwen9-x range refusal: gateway assumes a 400 naming the cap for 10,000,000, Qwen "
                             "says HTTP 400: frobnicate is wrong for key … — the gateway cannot learn the cap from "
                             "this answer; check --model names a model this key can call, else report the wording"]


def test_partial_mode_against_the_catalogues_fact():
    p, report, qwen = probe("qwen-plus", refusal("The model does not support partial mode"))
    p.partial_mode()
    assert lines(report) == ["DIFF qwen-plus partial mode: gateway assumes served, Qwen says not served (HTTP 400: The "
                             "model does not support partial mode) — the gateway's continuation of a cut stream fails "
                             "on this model; drop `partial` from its catalogue row"]
    body = json.loads(qwen.sent[0].content)
    assert body["messages"][-1] == {"role": "assistant", "content": "1, 2,", "partial": True}
    assert (body["max_completion_tokens"], body["enable_thinking"]) == (8, False)
    answered = (200, json.dumps({"choices": [], "usage": {"total_tokens": 12}}).encode())
    p, report, _ = probe("qwen3.8-max", answered)  # the catalogue: no partial mode
    p.partial_mode()
    assert lines(report)[0].startswith("DIFF qwen3.8-max partial mode: gateway assumes not served, Qwen says served "
                                       "(HTTP 200) — ") and report.spent == 12


def test_the_stream_and_the_cache_probes():
    p, report, qwen = probe("qwen-plus", (200, sse(FINISH, "[DONE]")))
    p.stream_shape()
    assert lines(report) == ["DIFF stream shape: gateway assumes a finish chunk, a usage chunk, then data: [DONE], "
                             "Qwen says no usage chunk after the finish — the gateway counts tokens itself for streams"]
    assert json.loads(qwen.sent[0].content)["stream_options"] == {"include_usage": True}
    usage = {"prompt_tokens": 1200, "completion_tokens": 1, "total_tokens": 1201,
             "prompt_tokens_details": {"cached_tokens": 0}}
    answered = (200, json.dumps({"usage": usage}).encode())
    p, report, qwen = probe("qwen-plus", answered, answered)
    p.cache_read()
    assert lines(report) == ["DIFF qwen-plus explicit cache: gateway assumes the second request reads the marked prefix,"
                             " Qwen says cached_tokens 0 — the gateway's cache markers buy nothing on this model and "
                             "their writes cost 125 %; report it"]
    assert report.spent == 2402 and report.requests == 2
    first, second = (json.loads(r.content) for r in qwen.sent)
    assert first == second and first["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert len(cache_prompt()) // 4 >= 1_100  # over 1,100 tokens (and Qwen's 1,024 least)
    assert all(KEY_TEXT not in ln for ln in report.lines())


def test_the_json_report():
    report = Report("ds")
    report.diff("m output cap", "1", "2", "fix")
    report.ok("model list: 1 model read")
    assert report.as_json() == {"account": "ds", "differences": [
        {"what": "m output cap", "gateway": "1", "qwen": "2", "todo": "fix",
         "line": "DIFF m output cap: gateway assumes 1, Qwen says 2 — fix"}],
        "matched": ["model list: 1 model read"], "skipped": [], "spent_tokens": 0}


def test_the_cache_probe_reads_qwens_count_in_either_place():
    """The probe reads Qwen's answer as it came (not through the gateway's answer, which moves a top-level
    `cached_tokens` into the details): either place counts, as for every other reader (cache_usage.py)."""
    assert cached_of({"prompt_tokens": 1200, "prompt_tokens_details": {"cached_tokens": 1100}}) == 1100
    assert cached_of({"prompt_tokens": 1200, "cached_tokens": 1100}) == 1100
    assert cached_of({"prompt_tokens": 1200}) == 0 and cached_of(None) == 0
