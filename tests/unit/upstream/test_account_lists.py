"""Where a model may go by the accounts' own lists (upstream/account_lists.py)."""

from __future__ import annotations

from qwen_gateway.accounts import KEY, Credential
from qwen_gateway.errors import CLIENT, DENIED, UNLISTED, UpstreamError
from qwen_gateway.exchange import ClientRequest, Exchange
from qwen_gateway.models.live import LiveModels
from qwen_gateway.upstream import account_lists

A = Credential("a", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-a")


def exchange(model: str, tried: tuple[str, ...] = ()) -> Exchange:
    ex = Exchange(ClientRequest("POST", "/v1/chat/completions", "http://127.0.0.1:8080/v1/chat/completions"))
    ex.attempt.model, ex.attempt.cred = model, A
    ex.attempt.tried.extend(tried)
    return ex


def lists(**by_account: list[str]) -> tuple[LiveModels, list[str]]:
    live, read = LiveModels(), []
    for name, ids in by_account.items():
        live.register(name, (), lambda name=name: read.append(name))
        live.put(name, ids)
    return live, read


def same(ex: Exchange, err: UpstreamError) -> UpstreamError:
    return err


def test_a_model_another_list_names_is_not_sent_to_an_account_whose_list_leaves_it_out():
    live, _ = lists(a=["qwen3.6-plus"], b=["qwen3.6-plus", "qwen3.7-max"])
    ex = exchange("qwen3.7-max")
    assert account_lists.unlisted(ex, A, live, same).kind == UNLISTED
    assert ex.notes == ["qwen3.7-max is not in a's own model list (read from Qwen): not sent there"]
    assert account_lists.unlisted(exchange("qwen3.6-plus"), A, live, same) is None


def test_a_model_no_list_names_goes_and_the_lists_are_read_again():
    live, read = lists(a=["qwen3.6-plus"], b=["qwen3.6-plus"])
    assert account_lists.unlisted(exchange("qwen9-max"), A, live, same) is None
    assert read == ["a"] and live.due("a")


def test_qwens_model_not_found_takes_it_out_of_the_accounts_list_and_sends_it_elsewhere():
    live, read = lists(a=["qwen3.6-plus", "qwen3.7-max"], b=["qwen3.7-max"])
    err = UpstreamError(CLIENT, 404, "The model does not exist", "invalid_request_error", "model_not_found")
    ex = exchange("qwen3.7-max")
    assert account_lists.not_found(ex, err, live).kind == UNLISTED  # b's list names it
    assert "qwen3.7-max" not in live.ids("a") and live.due("a")  # until a's list is read again (at once)
    assert ex.notes[-1].startswith("Qwen answered model_not_found for qwen3.7-max on a: not sent there again")
    assert account_lists.not_found(exchange("qwen3.7-max", tried=("b",)), err, live).kind == CLIENT  # b tried
    live2, _ = lists(a=["qwen3.6-plus"])
    assert account_lists.not_found(exchange("qwen3.6-plus"), err, live2) is err  # no other list: Qwen's, as is


def test_a_model_qwen_has_on_no_account_is_answered_here_a_while_then_asked_again():
    now = [0.0]
    live, _ = lists(a=["qwen3.6-plus"])
    live.clock = lambda: now[0]
    err = UpstreamError(CLIENT, 404, "The model does not exist", "invalid_request_error", "model_not_found")
    assert account_lists.not_found(exchange("qwen-nonesuch"), err, live) is err
    now[0] = 30.0
    ex = exchange("qwen-nonesuch")
    local = account_lists.unlisted(ex, A, live, same)
    assert local is not None and local.kind == UNLISTED and "30 s ago" in ex.notes[0]
    now[0] = 601.0
    assert account_lists.unlisted(exchange("qwen-nonesuch"), A, live, same) is None  # asked again
    for n in range(300):  # bounded: the oldest forgotten first
        live.gone(f"m{n}")
    assert len(live.absent) == 256 and "m0" not in live.absent


def test_a_403_denying_this_key_the_model_sends_it_elsewhere_and_never_answers_it_here():
    live, _ = lists(a=["qwen3.6-plus", "qwen3.7-max"], b=["qwen3.7-max"])
    err = UpstreamError(DENIED, 403, "Qwen denied access", "invalid_request_error", "permission_denied", param="model")
    ex = exchange("qwen3.7-max")
    assert account_lists.not_found(ex, err, live, denied=True).kind == UNLISTED and "qwen3.7-max" not in live.ids("a")
    assert ex.notes[-1].startswith("Qwen answered 403 AccessDenied (this key may not call it) for qwen3.7-max on a: "
                                   "not sent there again")
    alone, _ = lists(a=["qwen3.7-max"])
    assert account_lists.not_found(exchange("qwen3.7-max"), err, alone, denied=True) is err  # Qwen's 403, as it is
    assert alone.known_absent("qwen3.7-max") is None  # the model exists: never answered here as not found


# ---- a list that could not be read: unknown, never empty (issue 79 item 5) --------------------------------------

def unread(live: LiveModels, name: str) -> None:
    """`name` registered, its list never read (its reads failed): what it serves is unknown."""
    live.register(name, (), lambda: None)
    live.failed(name)


def test_a_model_a_read_list_lacks_goes_to_an_account_whose_list_could_not_be_read():
    live, _ = lists(a=["qwen3.6-plus"])
    unread(live, "b")
    assert live.unknown("b") and not live.unknown("a")
    ex = exchange("qwen3.7-max")
    refused = account_lists.unlisted(ex, A, live, same)
    assert refused is not None and refused.kind == UNLISTED  # a's list was read and lacks it: b may serve it
    assert "b's list could not be read" in ex.notes[0]
    assert account_lists.unlisted(exchange("qwen3.7-max", tried=("b",)), A, live, same) is None  # b tried: a's turn


def test_an_account_whose_list_is_unknown_is_tried_never_refused():
    live, _ = lists(a=["qwen3.6-plus"])
    unread(live, "b")
    b = Credential("b", KEY, A.base_url, "sk-b")
    ex = exchange("qwen3.7-max")
    ex.attempt.cred = b
    assert account_lists.unlisted(ex, b, live, same) is None


def test_qwens_refusal_on_a_read_list_is_not_answered_here_while_another_list_is_unknown():
    live, _ = lists(a=["qwen3.6-plus", "qwen3.7-max"])
    unread(live, "b")
    err = UpstreamError(CLIENT, 404, "The model does not exist", "invalid_request_error", "model_not_found")
    assert account_lists.not_found(exchange("qwen3.7-max"), err, live).kind == UNLISTED  # b may have it
    assert live.known_absent("qwen3.7-max") is None  # never "no account has it" while b's list is unknown
    assert account_lists.unlisted(exchange("qwen3.7-max"), A, live, same).kind == UNLISTED  # b, again
    denied = UpstreamError(DENIED, 403, "denied", "invalid_request_error", "permission_denied", param="model")
    assert account_lists.not_found(exchange("qwen3.7-max"), denied, live, denied=True).kind == UNLISTED


def test_a_list_that_keeps_failing_is_read_again_later_each_time_bounded():
    now = [0.0]
    live = LiveModels(clock=lambda: now[0])
    unread(live, "b")
    waits = []
    for _ in range(8):
        start = now[0]
        while not live.due("b"):
            now[0] += 1.0
        waits.append(now[0] - start)
        live.failed("b")
    assert waits[0] == 60.0 and waits[1] == 120.0 and waits == sorted(waits) and max(waits) <= 900.0
    live.put("b", ["qwen3.7-max"])
    live.failed("b")  # a read between: a new episode, the first wait again
    assert live.retry_wait("b") == 60.0


def test_an_unknown_list_of_another_providers_account_is_never_where_a_model_goes():
    """A team's own server whose list cannot be read (it is down) serves none of Model Studio's models: a model a
    Model Studio key's list lacks is not sent to try it there (before: tried there, and the client got a 404)."""
    live, _ = lists(a=["qwen3.6-plus"])
    live.register("gpu", (), lambda: None, provider="selfhosted")
    live.failed("gpu")
    assert live.unknown("gpu")
    ex = exchange("qwen3.7-max")
    assert account_lists.unlisted(ex, A, live, same) is None and not ex.notes  # Qwen's word decides, as before
