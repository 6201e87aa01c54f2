"""What Qwen says of itself wins (issue 70), through a real mitmdump and the emulator serving Model Studio's own
model list (`GET /api/v1/models`) drifted from the catalogue: a price and an output cap that differ. The gateway
caps and prices by the account's list and says so on the flow, the request line and the ledger row; when the list
cannot be read it says so once and the catalogue decides, as before.

The emulator's account is on 127.0.0.1, whose billing the price table cannot know: without a list, its answers are
counted at `qwen_unpriced_as`'s price (qwen4-max's), said as `priced_as`; the list's own price outranks that."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from helpers.home import Home
from helpers.ledger import ledger_rows
from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
from helpers.procs import Gateway, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MODEL = "qwen3.6-plus"  # the catalogue: output cap 65,536; on payg:intl $0.5 / $3 up to 256k prompt tokens
LISTED = {"prices": [{"range_name": "Input<=128k", "prices": [
              {"type": "input_token", "price": "7", "price_unit": "USD/1M tokens", "time_band": "standard"},
              {"type": "output_token", "price": "21", "price_unit": "USD/1M tokens", "time_band": "standard"}]},
                     {"range_name": "128k<Input<=1M", "prices": [
              {"type": "input_token", "price": "9", "price_unit": "USD/1M tokens", "time_band": "standard"},
              {"type": "output_token", "price": "27", "price_unit": "USD/1M tokens", "time_band": "standard"}]}],
          "model_info": {"max_output_tokens": 1234}}
ASK = [{"role": "user", "content": "say hello"}]


def gateway(tmp_path: Path, emu, make_gateway, name: str = "gw", key: str = "") -> tuple[Gateway, Path, str]:
    home = Home(tmp_path, emu)
    key = home.key("ms", secret=key or None)
    state = home.state
    gw = make_gateway(name, env=home.env(), args=("--set", "qwen_unpriced_as=qwen4-max", "--set", "qwen_debug_log=true"))
    until(lambda: any(r["path"].split("?")[0].endswith("/models") for r in emu.requests()), "the account's list read")
    return gw, state, key


def ask(gw: Gateway) -> openai.types.chat.ChatCompletion:
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60,
                      http_client=httpx.Client(trust_env=False))
    return c.chat.completions.create(model=MODEL, max_tokens=5000, messages=ASK)


def flow_notes(state: Path) -> list[str]:
    files = until(lambda: sorted((state / "logs").glob("exchange-*.json")) or None, "the exchange in the debug log")
    return json.loads(files[-1].read_text())["summary"]["notes"]


def test_the_accounts_own_list_caps_and_prices_and_says_so(tmp_path, emu, make_gateway):
    emu.switches(model_list={"override": {MODEL: LISTED}})
    gw, state, key = gateway(tmp_path, emu, make_gateway)
    until(lambda: "Qwen's model list read" in gw.log(), "the list read and said")
    answer = ask(gw)
    (sent,) = [r["body"] for r in emu.chat_requests()]
    assert sent["max_completion_tokens"] == 1234  # the list's cap, under the catalogue's 65,536
    notes = flow_notes(state)
    assert any(n.startswith(f"max_completion_tokens 5000 lowered to 1234, {MODEL}'s output cap (ms's model list "
                            "from Qwen, read ") for n in notes), notes
    (row,) = until(lambda: ledger_rows(state) or None, "the ledger row")
    u = answer.usage
    assert row["cost_unit"] == "USD" and row["priced_as"] is None  # the list's price, not qwen_unpriced_as's
    assert row["cost"] == pytest.approx((u.prompt_tokens * 7 + u.completion_tokens * 21) / 1e6, rel=1e-9)
    assert row["priced_by"].startswith("ms's model list from Qwen, read ") and \
        row["priced_by"].endswith(": Input<=128k"), row["priced_by"]
    assert "priced_by=qwen-list:Input<=128k" in gw.log()
    assert key not in gw.log() and key not in json.dumps(row)
    assert not any("time band" in n for n in notes)  # the list prices no other band


def test_a_time_band_without_hours_is_said_not_applied(tmp_path, emu, make_gateway):
    """Model Studio's list may price a band besides the standard one; it does not say its hours: the standard
    price prices the answer and the flow says so, naming the band as the list names it."""
    off_peak = {"type": "input_token", "price": "3", "price_unit": "USD/1M tokens", "time_band": "off_peak"}
    banded = {**LISTED, "prices": [{**LISTED["prices"][0], "prices": [*LISTED["prices"][0]["prices"], off_peak]},
                                   LISTED["prices"][1]]}
    emu.switches(model_list={"override": {MODEL: banded}})
    gw, state, _ = gateway(tmp_path, emu, make_gateway)
    until(lambda: "Qwen's model list read" in gw.log(), "the list read and said")
    answer = ask(gw)
    (row,) = until(lambda: ledger_rows(state) or None, "the ledger row")
    u = answer.usage
    assert row["cost"] == pytest.approx((u.prompt_tokens * 7 + u.completion_tokens * 21) / 1e6, rel=1e-9)
    assert f"priced at the standard time band: ms's list also prices {MODEL} in the band(s) off_peak, without " \
           "their hours (not applied)" in flow_notes(state)


@pytest.mark.parametrize("unreadable", [500, "garbage"])
def test_an_unreadable_list_is_said_once_and_the_catalogue_decides(tmp_path, emu, make_gateway, unreadable):
    emu.switches(model_list={"unreadable": unreadable, "override": {MODEL: LISTED}})
    gw, state, key = gateway(tmp_path, emu, make_gateway)
    until(lambda: "could not be read" in gw.log(), "the unreadable list said")
    answer = ask(gw)
    answer_again = ask(gw)
    sent = [r["body"] for r in emu.chat_requests()]
    assert [b["max_completion_tokens"] for b in sent] == [5000, 5000]  # the catalogue's cap is above it
    rows = until(lambda: (r := ledger_rows(state)) and len(r) >= 2 and r or None, "two ledger rows")
    for row, a in zip(rows, (answer, answer_again)):
        u = a.usage
        assert (row["priced_as"], row["priced_by"]) == ("qwen4-max", None)
        assert row["cost"] == pytest.approx((u.prompt_tokens * 1.5 + u.completion_tokens * 4.5) / 1e6, rel=1e-9)
    said = [ln for ln in gw.log().splitlines() if "Qwen's model list (GET /api/v1/models) could not be read" in ln]
    assert len(said) == 1 and "its models from GET /models, their prices and caps from the catalogue" in said[0], said
    assert key not in gw.log()


def test_a_tiered_model_is_priced_at_the_tier_its_prompt_falls_in(tmp_path, emu, make_gateway):
    tiers = [{"range_name": name, "prices": [
        {"type": "input_token", "price": inp, "price_unit": "USD/1M tokens", "time_band": "standard"},
        {"type": "output_token", "price": out, "price_unit": "USD/1M tokens", "time_band": "standard"}]}
        for name, inp, out in (("Input<=1k", "1", "2"), ("1k<Input<=1M", "10", "20"))]
    emu.switches(model_list={"override": {MODEL: {"prices": tiers}}})
    gw, state, _ = gateway(tmp_path, emu, make_gateway)
    until(lambda: "Qwen's model list read" in gw.log(), "the list read and said")
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=60,
                      http_client=httpx.Client(trust_env=False))
    short = c.chat.completions.create(model=MODEL, messages=ASK)
    long = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 1500}])
    assert short.usage.prompt_tokens <= 1000 < long.usage.prompt_tokens
    rows = until(lambda: (r := ledger_rows(state)) and len(r) >= 2 and r or None, "two ledger rows")
    for row, answer, (inp, out, tier) in zip(rows, (short, long), ((1, 2, "Input<=1k"), (10, 20, "1k<Input<=1M"))):
        u = answer.usage
        written = u.prompt_tokens_details.cache_write_tokens or 0  # the gateway marked the long prompt: a 5-min write
        assert row["cost"] == pytest.approx(((u.prompt_tokens - written) * inp + written * inp * 1.25
                                             + u.completion_tokens * out) / 1e6, rel=1e-9)
        assert row["priced_by"].endswith(": " + tier), row["priced_by"]


def test_the_last_list_read_serves_a_restart_while_qwens_cannot_be_read(tmp_path, emu, make_gateway):
    emu.switches(model_list={"override": {MODEL: LISTED}})
    gw, state, key = gateway(tmp_path, emu, make_gateway)
    kept = state / "model_lists" / "ms.json"
    until(lambda: kept.exists() or None, "the list kept")
    assert kept.stat().st_mode & 0o777 == 0o600 and key not in kept.read_text()
    gw.stop()
    emu.switches(model_list={"unreadable": 500})
    gw, state, _ = gateway(tmp_path, emu, make_gateway, "gw2", key)
    until(lambda: "could not be read" in gw.log(), "the unreadable list said")
    answer = ask(gw)
    (sent,) = [r["body"] for r in emu.chat_requests()]
    assert sent["max_completion_tokens"] == 1234  # the kept list's cap
    (row,) = until(lambda: ledger_rows(state) or None, "the ledger row")
    u = answer.usage
    assert row["cost"] == pytest.approx((u.prompt_tokens * 7 + u.completion_tokens * 21) / 1e6, rel=1e-9)
    assert row["priced_by"].startswith("ms's model list from Qwen, read "), row["priced_by"]


def shared_rows(url: str) -> list[tuple]:
    import psycopg
    with psycopg.connect(url) as conn:
        try:
            return conn.execute("SELECT cost, priced_by FROM usage ORDER BY ts").fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def list_reads(emu) -> int:
    return sum(r["path"].startswith("/api/v1/models") for r in emu.requests())


def test_on_postgresql_the_team_reads_a_list_once_and_a_new_gateway_prices_by_it(tmp_path, emu, pg_url):
    """Two gateways on one database: the second adopts the list the first read (no read of its own while the
    team's is younger than the hour), so it caps and prices by Qwen's list though Qwen's list cannot be read now
    and its own state folder has never kept one."""
    emu.switches(model_list={"override": {MODEL: LISTED}})
    key = emu.seed_token(kind="key")
    shared = ("--set", f"qwen_state_url={pg_url}")

    def on_database(name, env, args):
        return Gateway(tmp_path / name / "gw", env=env, args=args + shared).start()

    gws = []
    try:
        (tmp_path / "one").mkdir()
        one, _, _ = gateway(tmp_path / "one", emu, on_database, "one", key)
        gws.append(one)
        until(lambda: "Qwen's model list read" in one.log(), "gateway one's list read")
        read = list_reads(emu)
        emu.switches(model_list={"unreadable": 500, "override": {MODEL: LISTED}})
        (tmp_path / "two").mkdir()
        two, _, _ = gateway(tmp_path / "two", emu, on_database, "two", key)
        gws.append(two)
        until(lambda: "read by the team" in two.log(), "gateway two's adopted list said")
        answer = ask(two)
        sent = emu.chat_requests()[-1]["body"]
        assert sent["max_completion_tokens"] == 1234  # the team's list's cap
        (row,) = until(lambda: shared_rows(pg_url) or None, "the ledger row in the database")
        u = answer.usage
        assert row[0] == pytest.approx((u.prompt_tokens * 7 + u.completion_tokens * 21) / 1e6, rel=1e-9)
        assert row[1].startswith("ms's model list from Qwen, read "), row[1]
        assert list_reads(emu) == read  # gateway two never asked Qwen for the list
        assert "could not be read" not in two.log() and key not in two.log()
    finally:
        for gw in gws:
            gw.stop()
