"""The emulator's faults for what the gateway must say is unknown (issue 79, item 5): `no_usage` (a whole chat answer
without its `usage`) and `nested_error` with `status` (Qwen's wrapped refusal as an HTTP error's whole body)."""

from __future__ import annotations

import json

import httpx

from emulation.test_emulator import API_KEY, emulator_fixtures

proc, emu = emulator_fixtures("--quiet", "--api-key", API_KEY)


def chat(emu, **extra) -> httpx.Response:
    return httpx.post(emu.url + "/v1/chat/completions", timeout=10, trust_env=False,
                      headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"model": "coder-model", "messages": [{"role": "user", "content": "hi"}], **extra})


def test_no_usage_answers_whole_without_usage_once(emu):
    emu.fault("no_usage")
    r = chat(emu)
    assert r.status_code == 200 and "usage" not in r.json()
    assert r.json()["choices"][0]["message"]["content"] == "Echo: hi"
    assert "usage" in chat(emu).json()  # the fault is spent


def test_nested_error_with_a_status_is_that_http_errors_body(emu):
    for stream in (False, True):
        emu.fault("nested_error", status=400, code="data_inspection_failed", message="Inappropriate.")
        r = chat(emu, stream=stream)
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/event-stream")
        assert r.text.startswith("event:error\ndata:data: {")
        inner = json.loads(r.text.split("data:data: ", 1)[1])
        assert inner["error"] == {"code": "data_inspection_failed", "param": None, "message": "Inappropriate.",
                                  "type": "invalid_request_error"}
