"""What the model map knows of each model (models/model_map.py, from the catalogue): looked up once per model, and the
list /v1/models shows is what the accounts' plans serve."""

from __future__ import annotations

from qwen_gateway.models import catalogue, model_map
from qwen_gateway.models.model_map import ModelMap


def test_a_models_output_cap_is_looked_up_once(monkeypatch):
    """Asked per request: the catalogue is read once per model, not per request."""
    model_map.output_cap.cache_clear()
    catalogue.find.cache_clear()
    reads = []

    class Rows(dict):
        def get(self, key, default=None):
            reads.append(key)
            return super().get(key, default)

    monkeypatch.setattr(catalogue, "ROWS", Rows(catalogue.ROWS))
    for _ in range(3):
        assert model_map.output_cap("qwen-max-2031-01-01") == 8192  # qwen-max's, a dated snapshot of it
        assert model_map.output_cap("unknown-model-once") is None  # not known: nothing invented
    assert reads == ["qwen-max-2031-01-01", "qwen-max", "unknown-model-once"]
    model_map.output_cap.cache_clear()
    catalogue.find.cache_clear()


def ids(offers):
    return [m["id"] for m in ModelMap("qwen3-coder-plus").list(offers)]


def test_the_list_is_what_the_accounts_plans_serve():
    payg = ids([("key", "payg:intl", False, "a")])
    assert {"qwen4-max", "qwen3.8-max", "qwen3.7-max"} <= set(payg)  # served: listed
    assert "coder-model" not in payg and "vision-model" not in payg  # OAuth-only: not to a key account
    assert "qwen4-max-preview" not in payg and "text-embedding-v4" not in payg  # Token Plan only; no embeddings
    assert "gpt-4o" in payg  # the aliases a client sends
    coding = ids([("key", "coding", False, "a")])
    assert "qwen3-coder-plus" in coding and "qwen3.8-max" not in coding
    assert {"coder-model", "vision-model"} <= set(ids([("oauth", "", False, "a")]))
    assert "text-embedding-v4" in ids([("key", "payg:intl", True, "a")])
    assert "qwen3.8-max" in ids([("key", "", False, "a")])  # a key on another OpenAI-compatible host: any key plan


def test_every_listed_id_answers_get():
    m = ModelMap("qwen3-coder-plus")
    offers = [("key", "payg:intl", False, "a")]
    for listed in m.list(offers):
        assert m.get(listed["id"], offers) == listed
    assert m.get("qwen3.8-max", offers)["owned_by"] == "qwen"
    assert m.get("coder-model", offers) is None


def test_a_key_account_whose_base_listed_its_models_lists_those():
    m = ModelMap("qwen3-coder-plus")
    offers = [("key", "payg:intl", False, "ds")]
    m.accounts.register("ds", (), lambda: None)
    assert "qwen3.8-max" in [x["id"] for x in m.list(offers)]  # not fetched yet: the plan's catalogue
    m.accounts.put("ds", ["qwen3.6-plus", "qwen9-max"])
    listed = [x["id"] for x in m.list(offers) if not x["id"].startswith(("gpt-", "o1", "o3", "o4", "claude-",
                                                                         "codex-", "text-embedding-3", "text-embedding-ada"))]
    assert listed == ["qwen3.6-plus", "qwen9-max"]
    assert m.get("qwen9-max", offers)["owned_by"] == "qwen"
    both = [("key", "payg:intl", False, "ds"), ("oauth", "", False, "login")]
    assert {"qwen9-max", "coder-model"} <= {x["id"] for x in m.list(both)}


def test_the_list_carries_openais_shutdown_date_and_a_retired_model_is_known_as_such():
    listed = {m["id"]: m for m in ModelMap("qwen3-coder-plus").list()}
    assert listed["qwen4-max-preview"]["shutdown_date"] == "2026-11-25"
    assert listed["qwen4-max"]["shutdown_date"] is None and listed["gpt-4o"]["shutdown_date"] is None
    assert catalogue.retired("qwen4-max-preview", "2026-11-25") is None  # its last day
    gone = catalogue.retired("qwen4-max-preview", "2026-11-26")
    assert gone is not None and gone.successor == "qwen4-max"
    assert catalogue.retired("qwen4-max", "2030-01-01") is None and catalogue.retired("qwen9-max") is None
    assert len(catalogue.today()) == 10


def test_the_models_retired_on_2026_10_10_are_listed_and_got_alike_with_their_shutdown_date():
    """/v1/models and /v1/models/{id} read the same rows (api/models.py): a retired model is in both, with its
    last day served as OpenAI's `shutdown_date`, as qwen4-max-preview is."""
    m = ModelMap("qwen3-coder-plus")
    payg = [("key", "payg:intl", False, "a")]
    listed = {x["id"]: x for x in m.list(payg)}
    for model in ("qwen-turbo", "qwen-vl-max", "qwen-vl-plus", "qwq-plus", "qvq-max"):
        assert listed[model]["shutdown_date"] == "2026-10-09"
        assert m.get(model, payg) == listed[model]
    assert listed["qwen3.6-flash"]["shutdown_date"] is None


def _server(m: ModelMap, name: str, *models: tuple[str, int]) -> None:
    from qwen_gateway.models.listed import ListedModel, ModelList
    m.accounts.register(name, (), lambda: None)
    listed = ModelList(name, 0.0, {mid: ListedModel(mid, context=size, served_by="vllm") for mid, size in models})
    m.accounts.put(name, [mid for mid, _ in models], listed)


def test_a_self_hosted_server_lists_only_what_it_serves_with_its_window():
    m = ModelMap("qwen3-coder-plus")
    offers = [("key", "", False, "gpu", "selfhosted")]
    m.accounts.register("gpu", (), lambda: None)
    assert "qwen3.8-max" not in [x["id"] for x in m.list(offers)]  # no catalogue model: not read yet, nothing
    _server(m, "gpu", ("Qwen/Qwen3-8B", 40960))
    chat = [x for x in m.list(offers) if x["owned_by"] == "qwen"]
    assert [x["id"] for x in chat] == ["Qwen/Qwen3-8B"] and chat[0]["max_model_len"] == 40960
    assert m.get("Qwen/Qwen3-8B", offers)["max_model_len"] == 40960
    mixed = [*offers, ("key", "payg:intl", False, "ds", "dashscope")]
    assert {"Qwen/Qwen3-8B", "qwen3.8-max"} <= {x["id"] for x in m.list(mixed)}


def test_a_self_hosted_server_answers_the_aliases_with_what_it_serves():
    from qwen_gateway.accounts import KEY, Credential
    m = ModelMap("qwen3-coder-plus")
    gpu = Credential("gpu", KEY, "http://gpu:8000/v1", "k", provider="selfhosted")
    assert m.resolve("claude-haiku-4-5", gpu) == "qwen3-coder-flash"  # its list not read: nothing better known
    _server(m, "gpu", ("Qwen/Qwen3-8B", 40960), ("Qwen/Qwen3-0.6B", 32768))
    for alias in ("claude-haiku-4-5", "claude-sonnet-4-5", "gpt-4o", "gpt-5-codex", ""):
        assert m.resolve(alias, gpu) == "Qwen/Qwen3-8B", alias  # its first model: no default named
    assert m.resolve("Qwen/Qwen3-0.6B", gpu) == "Qwen/Qwen3-0.6B"  # a model it serves, as spelled
    assert m.resolve("qwen3.8-max", gpu) == "qwen3.8-max"  # asked by name: the server's 404 says it
    named = Credential("gpu", KEY, "http://gpu:8000/v1", "k", provider="selfhosted", default_model="Qwen/Qwen3-0.6B")
    assert m.resolve("gpt-4o", named) == m.resolve("claude-haiku", named) == "Qwen/Qwen3-0.6B"
    ds = Credential("ds", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "k")
    assert m.resolve("claude-haiku-4-5", ds) == "qwen3-coder-flash"  # Model Studio's: the catalogue's


def test_the_models_an_account_is_sent_without_the_client_naming_them():
    """Its default (as resolved: a key account's, else the key default for the OAuth-only gateway default) and the
    targets of its own map and of qwen_model_map (the built-in aliases are not the user's word)."""
    from qwen_gateway.accounts import KEY, Credential
    cred = Credential("k", KEY, "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "sk-k")
    models = ModelMap("coder-model", {"gpt-4o": "qwen3-max"})
    assert models.named(cred) == {"qwen3-coder-plus": "its default model", "qwen3-max": "the model map's gpt-4o"}
