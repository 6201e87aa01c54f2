"""An account's own list as the body builder and the price table see it (models/listed.py)."""

from qwen_gateway.models.learned import INPUT, OUTPUT, LearnedFacts
from qwen_gateway.models.listed import ListedModel, ModelList, SeenBy
from qwen_gateway.models.live import LiveModels
from qwen_gateway.pricing.prices import PriceTable, Tier, builtin
from qwen_gateway.upstream.dashscope import rules

LISTED = ModelList("acct", 1_796_000_000.0, {"qwen3.6-plus": ListedModel(
    "qwen3.6-plus", (Tier(None, 7.0, 21.0, name="Default"),), context=100_000, max_output=1234)})


def test_a_refusals_lesson_first_then_the_list():
    learned = LearnedFacts()
    seen = SeenBy(learned, LISTED)
    assert seen.value("qwen3.6-plus", OUTPUT) == 1234 and seen.value("qwen3.6-plus", INPUT) == 100_000
    assert "acct's model list from Qwen, read 2026-" in seen.get("qwen3.6-plus", OUTPUT).said()
    assert seen.get("qwen3-max", OUTPUT) is None  # not listed: the catalogue's, as before
    assert seen.stream_only is learned.stream_only  # its other lessons are the learned facts'
    learned.learn("qwen3.6-plus", OUTPUT, 8192)
    assert seen.value("qwen3.6-plus", OUTPUT) == 8192


def test_the_output_cap_is_the_lists_and_the_note_says_so():
    notes: list[str] = []
    body = rules.clamp_output({"model": "qwen3.6-plus", "max_tokens": 5000}, notes, field="max_tokens",
                              learned=SeenBy(LearnedFacts(), LISTED))
    assert body["max_tokens"] == 1234 and "acct's model list from Qwen" in notes[0]


def test_live_models_keep_the_last_list_read_and_build_with_it():
    live = LiveModels()
    learned = LearnedFacts()
    assert live.seen_by("acct", learned) is learned  # no list: nothing wraps the facts
    live.put("acct", ["qwen3.6-plus"], LISTED)
    live.put("acct", ["qwen3.6-plus"])  # read again without prices: the dated list stays
    assert live.model_list("acct") is LISTED and live.seen_by("acct", learned).value("qwen3.6-plus", OUTPUT) == 1234


def test_the_lists_price_counts_unless_the_users_file_prices_the_model(tmp_path):
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}
    tiers = LISTED.tiers("qwen3.6-plus")
    charged = builtin().charge("payg:intl", "qwen3.6-plus", usage, listed=tiers)
    assert (charged.amount, charged.tier) == (28.0, "Default")
    assert builtin().charge("payg:intl", "qwen3.6-plus", usage).tier is None  # the table's own
    assert builtin().charge("coding", "qwen3.6-plus", usage, listed=tiers).unit == "requests"  # a plan's unit
    mine = tmp_path / "prices.json"
    mine.write_text('{"payg:intl": {"qwen3.6-plus": {"input": 1, "output": 1}}}')
    from qwen_gateway.pricing.prices import load
    assert load(str(mine)).charge("payg:intl", "qwen3.6-plus", usage, listed=tiers).amount == 2.0
    default = tmp_path / "default.json"  # the user's default for accounts of no known billing: theirs too
    default.write_text('{"*": {"qwen3.6-plus": {"input": 1, "output": 1}}}')
    assert load(str(default)).charge("", "qwen3.6-plus", usage, listed=tiers).amount == 2.0
    assert load(str(default)).charge("payg:intl", "qwen3.6-plus", usage, listed=tiers).amount == 28.0  # list over table
    assert PriceTable().charge("payg:intl", "new-model", usage, listed=tiers).amount == 28.0  # listed only: priced


def test_a_list_is_read_again_once_due_while_the_account_serves():
    now = [0.0]
    live = LiveModels(ttl=3600.0, clock=lambda: now[0])
    reads: list[str] = []
    live.register("acct", (), lambda: reads.append("acct"))
    live.keep_current("oauth")  # not registered: nothing to read
    live.keep_current("acct")
    live.put("acct", ["qwen3.6-plus"], LISTED)
    now[0] = 3599.0
    live.keep_current("acct")
    assert reads == ["acct"]  # read at first, not again within the hour
    now[0] = 3601.0
    live.keep_current("acct")
    assert reads == ["acct", "acct"]


def test_a_restored_list_serves_until_a_fresh_one_and_is_due_at_once():
    live = LiveModels()
    live.restore("acct", LISTED)
    assert live.ids("acct") == ("qwen3.6-plus",) and live.model_list("acct") is LISTED and live.due("acct")
