"""What a usage says of Qwen's prompt cache (cache_usage.py), read alike by the ledger's row and the request line
(observe/), the price (pricing/prices.py) and a resumed stream's summed usage (turn/answer_so_far.py): before, each read it its
own way, and a usage where the ways part said three different things."""

from __future__ import annotations

import pytest

from qwen_gateway.cache_usage import read
from qwen_gateway.observe.ledger_rows import row_of
from qwen_gateway.observer import cache_write_tokens, cached_tokens
from qwen_gateway.pricing.prices import Tier, _prompt_usd
from qwen_gateway.turn.answer_so_far import AnswerSoFar
from helpers.observe_testlib import exchange


def details(**fields) -> dict:
    return {"prompt_tokens": 10000, "completion_tokens": 10, "prompt_tokens_details": fields}


@pytest.mark.parametrize("usage, said", [
    (details(cached_tokens=900), (900, None, 0, "implicit")),  # the implicit cache
    ({"cached_tokens": 7}, (7, None, 0, "implicit")),  # a top-level count where the details are absent
    (details(cached_tokens=0, cache_creation_input_tokens=3000, cache_type="ephemeral",
             cache_creation={"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000}),
     (0, 3000, 2000, "explicit")),
    (details(cached_tokens=5, cache_write_tokens=40), (5, 40, 0, "explicit")),  # OpenAI's name alone
    (details(cached_tokens=1, cache_type="ephemeral"), (1, None, 0, "explicit")),
    (details(cached_tokens=None), (None, None, 0, None)),
    (None, (None, None, 0, None)),
])
def test_what_a_usage_says(usage, said):
    assert read(usage) == said


# Where the old readers parted: Qwen's creation count said as 0 (the ledger: the implicit cache; the sum: the
# explicit), both names with different counts (the ledger took OpenAI's, the price Qwen's), a negative count (the
# ledger kept it, the price read 0), an hour's write larger than the write.
PARTED = [
    details(cached_tokens=9000, cache_creation_input_tokens=0),
    details(cached_tokens=1000, cache_creation_input_tokens=500, cache_write_tokens=400),
    details(cached_tokens=-5, cache_creation_input_tokens=300, cache_type="ephemeral"),
    details(cached_tokens=0, cache_creation_input_tokens=300, cache_type="ephemeral",
            cache_creation={"ephemeral_1h_input_tokens": 900}),
]
TIER = Tier(None, input=1.0, output=2.0, cached=0.2, cache_read=0.1, cache_write=1.25, cache_write_1h=2.0)


@pytest.mark.parametrize("usage", PARTED)
def test_the_ledger_the_price_and_the_sum_read_a_usage_alike(usage):
    cached, written, hour, kind = read(usage)
    explicit = kind == "explicit"
    assert (cached_tokens(usage), cache_write_tokens(usage)) == (cached, written)
    row = row_of(exchange(usage=usage))
    assert (row["cached_tokens"], row["cache_write_tokens"], row["cache_kind"]) == (cached, written, kind)
    hits, wrote = cached or 0, written or 0
    price = (10000 - hits - wrote) * 1.0 + hits * (0.1 if explicit else 0.2) + (wrote - hour) * 1.25 + hour * 2.0
    assert _prompt_usd(TIER, usage, 10000) == (pytest.approx(price), True)  # (the price, the hits priced as such)
    summed = AnswerSoFar(None).sum(usage)["prompt_tokens_details"]  # one request: its own usage
    assert summed["cached_tokens"] == hits
    if explicit:
        assert summed["cache_creation_input_tokens"] == wrote
        assert summed["cache_creation"] == {"ephemeral_5m_input_tokens": wrote - hour, "ephemeral_1h_input_tokens": hour}
