"""Where the last model list read is kept (models/listed_kept.py): the state folder's copy (0600, whole or none)
and, on PostgreSQL, the team's row per account and key (a later read only replaces an earlier one; another key's
row is not this key's; a database away is no list, never a fault) — on a real PostgreSQL. And how a key account's
refresh uses the team's (upstream/dashscope/key_models.py): a row younger than the hour is adopted and Qwen is not
asked; an older one serves until Qwen's list is read; one no later than this gateway's own is ignored."""

from __future__ import annotations

import time

from qwen_gateway.accounts import Credential
from qwen_gateway.auth.credfile import atomic_write
from qwen_gateway.models.listed import ListedModel, ModelList, dumps, loads
from qwen_gateway.models.listed_kept import KeptLists, TeamLists, key_id, kept_lists
from qwen_gateway.models.live import LIVE_TTL, LiveModels
from qwen_gateway.pricing.prices import Tier
from qwen_gateway.storage.pg import Database
from qwen_gateway.upstream.dashscope.key_models import ADOPTED_SPREAD_S, KeyCatalogue

from helpers.pgserver import pg_server, pg_url  # noqa: F401  (fixtures)

LISTED = ModelList("acct", 1_796_000_000.0, {"qwen3.6-plus": ListedModel(
    "qwen3.6-plus", (Tier(None, 7.0, 21.0, name="Default"),), context=100_000, max_output=1234)})
KEY = key_id("https://h/compatible-mode/v1", "sk-one")


async def test_the_folders_copy_reads_back_whole_and_a_damaged_one_is_none(tmp_path, caplog):
    both = ModelList("acct", LISTED.read_at, {**LISTED.models, "qwen9-max": ListedModel("qwen9-max", max_output=9,
                                                                                      other_bands=("off_peak",))})
    kept = kept_lists(tmp_path, None, atomic_write)
    assert not kept.shared and kept.last("acct") is None
    await kept.keep(both, KEY)
    written = tmp_path / "model_lists" / "acct.json"
    assert written.stat().st_mode & 0o777 == 0o600
    back = kept.last("acct")
    assert back == both and back.tiers("qwen3.6-plus")[0].name == "Default" and back.tiers("qwen9-max") is None
    assert back.bands_said("qwen9-max").endswith("in the band(s) off_peak, without their hours (not applied)")
    assert back.bands_said("qwen3.6-plus") == "" and back.bands_said("nothing") == ""
    assert kept.last("other") is None and await kept.team("acct", KEY) is None
    written.write_text(dumps(both)[:-5])
    with caplog.at_level("WARNING", logger="qwen"):
        assert kept.last("acct") is None
    assert [r.getMessage() for r in caplog.records] == [
        f"qwen: account acct: the model list kept in {tmp_path / 'model_lists'} is damaged: not used"]
    for bad in ("", "{}", '{"account": "a", "read_at": 1, "models": [{"id": "m", "nonsense": 1}]}', "[1]"):
        assert loads(bad) is None
    assert KeptLists(None).last("acct") is None


def test_a_key_is_named_by_a_digest_never_itself():
    assert "sk-one" not in KEY and len(KEY) == 32
    assert key_id("https://h/compatible-mode/v1", "sk-two") != KEY != key_id("https://other/v1", "sk-one")


async def test_on_postgresql_the_later_read_wins_and_another_key_reads_nothing(tmp_path, pg_url, caplog):
    one, two = TeamLists(tmp_path / "one", atomic_write, Database(pg_url)), TeamLists(None, None, Database(pg_url))
    assert await two.team("acct", KEY) is None
    await one.keep(LISTED, KEY)
    assert await two.team("acct", KEY) == LISTED and one.last("acct") == LISTED  # the folder's copy too
    later = ModelList("acct", LISTED.read_at + 60, {})
    await two.keep(later, KEY)
    await one.keep(LISTED, KEY)  # an earlier read arriving late replaces nothing
    assert (await one.team("acct", KEY)).read_at == later.read_at
    assert await one.team("acct", key_id("https://h/compatible-mode/v1", "sk-two")) is None
    assert await one.team("other", KEY) is None
    await Database(pg_url).execute("UPDATE model_lists SET list = '{not json'")
    with caplog.at_level("WARNING", logger="qwen"):
        assert await one.team("acct", KEY) is None and await one.team("acct", KEY) is None
    said = [r.getMessage() for r in caplog.records]
    assert said == ["qwen: account acct: the team's model list in the database is damaged: not used"], said


async def test_a_database_away_is_no_list_and_keeping_still_writes_the_folder(tmp_path, caplog):
    away = TeamLists(tmp_path, atomic_write, Database("postgresql://qwen@127.0.0.1:9/none?connect_timeout=1"))
    assert await away.team("acct", KEY) is None
    await away.keep(LISTED, KEY)
    assert away.last("acct") == LISTED


class StandInTeam(KeptLists):
    shared = True

    def __init__(self, row: ModelList | None) -> None:
        super().__init__(None)
        self.row, self.asked = row, 0

    async def team(self, account, key):
        self.asked += 1
        assert key == key_id(CRED.base_url, CRED.token)
        return self.row


CRED = Credential("acct", "key", base_url="https://h/compatible-mode/v1", token="sk-one")


def refresher(row: ModelList | None, mine: ModelList | None = None) -> tuple[LiveModels, KeyCatalogue, list]:
    live = LiveModels()
    fetched: list = []
    catalogue = KeyCatalogue(live, "acct", lambda: CRED, kept=StandInTeam(row))

    async def listed(cred):
        fetched.append(cred.account)
        return None, "HTTP 503"

    async def ids(cred):
        return [], "HTTP 503"

    catalogue._listed, catalogue._fetch = listed, ids  # Qwen's list unreadable: what a read would be
    live.register("acct", (), catalogue.refresh_soon)
    if mine is not None:
        live.put("acct", list(mine.models), mine)
    return live, catalogue, fetched


async def test_a_teams_list_younger_than_the_hour_is_adopted_and_qwen_not_asked():
    team = ModelList("acct", time.time() - 600, LISTED.models)
    live, catalogue, fetched = refresher(team)
    await catalogue.refresh()
    assert fetched == [] and live.model_list("acct") is team and live.ids("acct") == ("qwen3.6-plus",)
    assert not live.due("acct")  # current for the hour's remaining 50 minutes, less up to ADOPTED_SPREAD_S
    live.clock = lambda: time.monotonic() + LIVE_TTL - 600 - ADOPTED_SPREAD_S - 5
    assert not live.due("acct")
    live.clock = lambda: time.monotonic() + LIVE_TTL - 590
    assert live.due("acct")


async def test_gateways_that_adopted_one_read_fall_due_apart():
    team = ModelList("acct", time.time() - 600, LISTED.models)
    due_at = set()
    for _ in range(5):
        live, catalogue, _ = refresher(team)
        await catalogue.refresh()
        due_at.add(round(live._live["acct"][1], 1))
    assert len(due_at) == 5  # at random within ADOPTED_SPREAD_S: the first due asks Qwen, the others adopt its read


async def test_an_older_teams_list_serves_until_qwens_is_read():
    team = ModelList("acct", time.time() - 2 * LIVE_TTL, LISTED.models)
    live, catalogue, fetched = refresher(team)
    await catalogue.refresh()
    assert fetched == ["acct"] and live.model_list("acct") is team  # Qwen's could not be read: the team's serves


async def test_a_teams_list_no_later_than_this_gateways_is_ignored():
    mine = ModelList("acct", time.time() - 60, LISTED.models)
    live, catalogue, fetched = refresher(ModelList("acct", mine.read_at - 1, {}), mine)
    live.stale("acct")  # Qwen said a model is gone: this gateway reads Qwen's list itself
    await catalogue.refresh()
    assert fetched == ["acct"] and live.model_list("acct") is mine
