"""Every client API of a real mitmdump, fed bodies generated from the published request schemas (OpenAI's spec:
chat, Responses, embeddings, legacy completions; Anthropic's Messages and count_tokens), valid ones and ones
with a field broken (tests/helpers/schema_strategy.py), against the strict emulator.

Whatever the body: never a 5xx, never a traceback in the gateway's log, every error in the client's own shape
(OpenAI `{"error": {message, type, param, code}}`, Anthropic `{"type": "error", "error": {type, message}}`).
A chat, completions or Responses body the schema refuses is refused 400 `invalid_request_error` with `param`
naming the field, as OpenAI does (Responses: the spec's schema with the gateway's documented widenings, fields it
does not define refused). And valid bodies are answered (counted after each run): a fuzzer whose bodies
all bounce off the first check would prove nothing.

Bounded: a fixed number of examples per API. In CI (`CI` set) the examples are derandomized, so a run is
reproducible; elsewhere they are random and failures are kept in hypothesis's example database (.hypothesis/).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
import json
import os
import re
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.procs import Gateway
from helpers.openai_schema import validate, validate_stream_event
from helpers.schema_strategy import TEXT, Schemas
from e2e.test_e2e_rules import key_gw  # noqa: F401 - the fixture: a key account that also serves embeddings

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("QWEN_FUZZ_EXAMPLES", "100"))  # per API; more for a longer hunt
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
OPENAI, ANTHROPIC, GATEWAY = Schemas("openai"), Schemas("anthropic"), Schemas("gateway")
CHAT_MODELS = st.sampled_from(["gpt-4o", "gpt-5", "o3", "qwen3-coder-plus", "qwen3-coder-flash", "coder-model"])
MODELS = {
    "/v1/chat/completions": CHAT_MODELS, "/v1/responses": CHAT_MODELS,
    "/v1/completions": st.sampled_from(["gpt-3.5-turbo-instruct", "qwen3-coder-plus"]),
    "/v1/embeddings": st.sampled_from(["text-embedding-3-small", "text-embedding-v4", "text-embedding-ada-002"]),
    "/v1/messages": st.sampled_from(["claude-sonnet-4-6", "claude-haiku-4-5", "qwen3-coder-plus"]),
    "/v1/messages/count_tokens": st.sampled_from(["claude-sonnet-4-6", "qwen3-coder-plus"]),
}
APIS = {  # path -> (schemas, schema name, dialect, the schema every body it refuses is refused by, with its param)
    # the judges: the spec's, with the widenings docs/compatibility.md lists (what real clients send) and Qwen's
    # bounds (max_tokens at least 1), unknown Responses fields refused
    "/v1/chat/completions": (OPENAI, "CreateChatCompletionRequest", "openai", (GATEWAY, "CreateChatCompletionRequest")),
    "/v1/completions": (OPENAI, "CreateCompletionRequest", "openai", (GATEWAY, "CreateCompletionRequest")),
    "/v1/responses": (OPENAI, "CreateResponse", "openai", (GATEWAY, "CreateResponseBody")),
    "/v1/embeddings": (OPENAI, "CreateEmbeddingRequest", "openai", None),
    "/v1/messages": (ANTHROPIC, "CreateMessageParams", "anthropic", None),
    "/v1/messages/count_tokens": (ANTHROPIC, "CountTokensParams", "anthropic", None),
}
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
OUTCOMES: collections.Counter = collections.Counter()  # (path, valid, status) -> count, checked at the end


@pytest.fixture(scope="module")
def fuzz_gws(key_gw, gateway) -> dict[str, Gateway]:
    """Two gateways on the emulator: `key`, whose key account also serves embeddings (valid bodies get answers),
    and `oauth`, a Qwen Code login alone (no embeddings account: every embeddings request is refused, however
    many inputs it has)."""
    return {"key": key_gw, "oauth": gateway}


class LogWatch:
    """What a gateway wrote to its log since the last look."""

    def __init__(self, gw: Gateway) -> None:
        self.gw, self.offset = gw, gw.logfile.stat().st_size  # what earlier tests left is theirs
        self.http = httpx.Client(base_url=gw.url, trust_env=False, timeout=60)  # one keep-alive connection

    def new(self) -> str:
        with open(self.gw.logfile, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode("utf-8", "replace")


def _roots(errors) -> set[str]:
    """The top-level fields a schema validator's errors are about."""
    roots = set()
    for e in errors:
        if e.path:
            roots.add(str(e.path[0]))
        elif e.validator == "required":
            roots.update(re.findall(r"'([^']+)' is a required property", e.message))
        else:
            roots.add("")
    return roots


def _error_shape(dialect: str, body: object) -> str | None:
    """What is wrong with an error body for the dialect (None: it is right)."""
    if dialect == "anthropic":
        ok = (isinstance(body, dict) and body.get("type") == "error" and isinstance(body.get("error"), dict)
              and isinstance(body["error"].get("type"), str) and isinstance(body["error"].get("message"), str))
        return None if ok else f"not an Anthropic error: {str(body)[:300]}"
    err = body.get("error") if isinstance(body, dict) else None
    if not (isinstance(err, dict) and set(err) >= {"message", "type", "param", "code"}
            and isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str)):
        return f"not an OpenAI error: {str(body)[:300]}"
    return None


def _stream_errors(dialect: str, text: str) -> list[str]:
    """The in-band errors of a streamed answer that are not in the dialect's shape."""
    bad = []
    for line in re.split(r"\r\n|\r|\n", text):  # SSE's line ends only: str.splitlines also cuts at U+0085, U+2028
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        try:
            event = json.loads(line[5:])
        except ValueError:
            bad.append(f"not JSON: {line[:200]}")
            continue
        if dialect == "openai" and isinstance(event, dict) and "error" in event and "type" not in event:
            if (problem := _error_shape("openai", event)) is not None:
                bad.append(problem)
        if dialect == "anthropic" and isinstance(event, dict) and event.get("type") == "error":
            if (problem := _error_shape("anthropic", event)) is not None:
                bad.append(problem)
    return bad


def _valid_responses(text: str, shown: str) -> None:
    """A Response (or a stream of events) as the spec and openai-python's own model have it: what the gateway
    echoes from the request included."""
    from openai.types.responses import Response
    whole = [json.loads(text)] if text.lstrip().startswith("{") else []
    for line in re.split(r"\r\n|\r|\n", text):
        if line.startswith("data:") and line.strip() != "data: [DONE]":
            event = json.loads(line[5:])
            try:
                validate_stream_event(event)
            except AssertionError as e:
                raise AssertionError(f"{e}\n{shown}") from None
            whole += [event["response"]] if isinstance(event.get("response"), dict) else []
    for response in whole:
        try:
            validate("Response", response)
            Response.model_validate(response)
        except (AssertionError, ValueError) as e:
            raise AssertionError(f"{e}\n{shown}") from None


def send(watch: LogWatch, path: str, body: dict) -> None:
    schemas, name, dialect, judge = APIS[path]
    judged = _judged(dialect, body)
    errors = schemas.errors(name, judged)
    refused = judge[0].errors(judge[1], judged) if judge else []
    payload = json.dumps(body)  # ASCII: a lone surrogate goes as "\ud83d", as JavaScript writes it
    headers = {"content-type": "application/json", **(ANTHROPIC_HEADERS if dialect == "anthropic" else {})}
    with watch.http.stream("POST", path, content=payload, headers=headers) as r:
        text = r.read().decode("utf-8", "replace")
    OUTCOMES[path, not errors, r.status_code] += 1
    shown = f"POST {path} {payload[:1500]}\n-> {r.status_code} {text[:800]}"
    log = watch.new()
    assert "Traceback" not in log, f"{shown}\n{log[-3000:]}"
    assert r.status_code < 500, shown
    if r.status_code >= 400:
        body_out = json.loads(text)
        assert (problem := _error_shape(dialect, body_out)) is None, f"{problem}\n{shown}"
    elif r.headers.get("content-type", "").startswith("text/event-stream"):
        assert not (bad := _stream_errors(dialect, text)), f"{bad}\n{shown}"
    if path == "/v1/responses" and r.status_code == 200:
        _valid_responses(text, shown)
    if refused:
        roots = _roots(refused)
        assert r.status_code == 400, f"schema-invalid ({sorted(roots)}), answered {r.status_code}\n{shown}"
        err = json.loads(text)["error"]
        assert err["type"] == "invalid_request_error", shown
        param = err.get("param")
        assert isinstance(param, str) and param, f"no param\n{shown}"
        assert re.split(r"[.\[]", param)[0] in roots or "" in roots, f"param {param!r}, invalid: {roots}\n{shown}"


def reached(path: str) -> None:
    """Counted work: valid bodies were answered (not all refused at the entrance), so the run went through
    translation, the engine and back; and broken bodies were sent too."""
    answered = sum(n for (p, valid, status), n in OUTCOMES.items() if p == path and valid and status == 200)
    broken = sum(n for (p, valid, _), n in OUTCOMES.items() if p == path and not valid)
    assert answered >= EXAMPLES // 10, f"{path}: only {answered} valid bodies answered: {OUTCOMES}"
    assert broken >= EXAMPLES // 10, f"{path}: only {broken} broken bodies sent: {OUTCOMES}"


# What keeps valid bodies going on to Qwen rather than all refused at one check: legacy completions refuse
# what Qwen cannot do (prompt batches and token ids, echo, suffix, logprobs, best_of), so most prompts are
# one string; embeddings take non-empty strings and cl100k token ids, and the sizes Qwen offers; a
# Response needs input (the spec leaves it optional for stored prompts, which the gateway refuses).
WORDS = st.text(min_size=1, max_size=12)
OVERRIDES = {
    "/v1/completions": {"prompt": st.one_of(TEXT, TEXT, TEXT, st.lists(TEXT, max_size=2)),
                        "best_of": st.sampled_from([1, None, 2]), "echo": st.sampled_from([False, None, True])},
    "/v1/embeddings": {"input": st.one_of(WORDS, st.lists(WORDS, min_size=1, max_size=25),
                                          st.lists(st.integers(0, 50_000), min_size=1, max_size=8), TEXT),
                       "dimensions": st.sampled_from([1024, 1536, 512, 64, 3])},
}
DEFAULTS = {"/v1/responses": {"input": st.one_of(TEXT, st.just([{"role": "user", "content": "hi"}]))}}


def _judged(dialect: str, body: dict) -> dict:
    """A top-level null stands for an absent field on the gateway's OpenAI APIs (clients send them; docs/
    compatibility.md): judged as absent here too. Anthropic's schema has no such leniency."""
    return {k: v for k, v in body.items() if v is not None} if dialect == "openai" else body


def bodies(path: str) -> st.SearchStrategy:
    schemas, name, dialect, _ = APIS[path]
    overrides, defaults = {"model": MODELS[path], **OVERRIDES.get(path, {})}, DEFAULTS.get(path)
    # only what the schema calls broken: a break the schema allows (a null, a dropped optional field) is a
    # valid body, and half the examples are meant to be refused (reached() counts both halves)
    broken = schemas.broken(name, overrides, defaults).filter(lambda b: schemas.errors(name, _judged(dialect, b)))
    return st.one_of(schemas.valid(name, overrides, defaults), broken)


@pytest.fixture(scope="module")
def watches(fuzz_gws) -> Iterator[dict[str, LogWatch]]:
    out = {name: LogWatch(gw) for name, gw in fuzz_gws.items()}
    yield out
    for w in out.values():
        w.http.close()


@pytest.mark.parametrize("path", [p for p in APIS if p != "/v1/embeddings"])
def test_every_body_is_answered_or_refused_in_the_clients_dialect(fuzz_gws, watches, path):
    @FUZZ
    @given(body=bodies(path))
    def run(body):
        send(watches["key"], path, body)

    run()
    reached(path)


def test_every_embeddings_body_is_answered_or_refused_with_and_without_an_embeddings_account(fuzz_gws, watches):
    @FUZZ
    @given(body=bodies("/v1/embeddings"))
    def run(body):
        for name in ("key", "oauth"):
            send(watches[name], "/v1/embeddings", body)

    run()
    reached("/v1/embeddings")


# Stored chat completions (store: true): the ids, queries and update bodies of /v1/chat/completions/{id}, its
# messages and the list, generated: a stored id or any text, any query value, any update body (the spec's
# `{"metadata": Metadata}` and broken ones). Never a 5xx, every error in OpenAI's shape.
ANY = st.one_of(TEXT, st.integers(-5, 200).map(str), st.sampled_from(["asc", "desc", "gpt-4o", ""]))
METADATA = st.one_of(st.none(), st.dictionaries(TEXT, TEXT, max_size=3), st.dictionaries(
    st.text(max_size=70), st.text(max_size=600), min_size=15, max_size=18), st.just({"k": 5}), st.just("x"))
UPDATE = st.one_of(st.fixed_dictionaries({"metadata": METADATA}), st.dictionaries(
    st.sampled_from(["metadata", "model", "store", ""]), st.one_of(METADATA, TEXT), max_size=2))
QUERY = st.dictionaries(st.sampled_from(["limit", "order", "after", "model", "metadata[run]", "metadata[x]"]), ANY,
                        max_size=4)


def test_every_stored_chat_completion_request_is_answered_or_refused_in_openais_shape(fuzz_gws, watches):
    watch = watches["key"]
    made = watch.http.post("/v1/chat/completions", json={
        "model": "gpt-4o", "messages": [{"role": "user", "content": "kept"}], "store": True,
        "metadata": {"run": "fuzz"}})
    assert made.status_code == 200, made.text
    stored = made.json()["id"]
    seen: collections.Counter = collections.Counter()

    @FUZZ
    @given(method=st.sampled_from(["GET", "POST", "DELETE"]), cid=st.one_of(st.just(stored), TEXT),
           messages=st.booleans(), query=QUERY, body=UPDATE, listing=st.booleans())
    def run(method, cid, messages, query, body, listing):
        path = "/v1/chat/completions" if listing else \
            f"/v1/chat/completions/{quote(cid.encode('utf-8', 'surrogatepass'), safe='') or 'x'}" + \
            ("/messages" if messages else "")
        method = "GET" if listing else method
        if method == "DELETE" and cid == stored:
            method = "GET"  # keep the one stored completion for the other examples
        r = watch.http.request(method, path, params=query, content=json.dumps(body) if method == "POST" else None,
                               headers={"content-type": "application/json"})
        seen[r.status_code] += 1
        shown = f"{method} {path} {query} {body}\n-> {r.status_code} {r.text[:800]}"
        log = watch.new()
        assert "Traceback" not in log, f"{shown}\n{log[-3000:]}"
        assert r.status_code < 500, shown
        if r.status_code >= 400:
            assert (problem := _error_shape("openai", r.json())) is None, f"{problem}\n{shown}"
        else:
            assert r.json().get("object") in ("list", "chat.completion"), shown

    run()
    assert seen[200] >= EXAMPLES // 10 and sum(n for s, n in seen.items() if s >= 400) >= EXAMPLES // 10, seen
