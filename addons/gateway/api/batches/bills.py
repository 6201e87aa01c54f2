"""A finished batch's bill: written exactly once, whatever crashes, whoever looks first — a client (`GET
/v1/batches/{id}`) or the gateway itself (watch.py).

Qwen bills a batch's answered lines when it completes it. The bill is a usage-ledger row of its own, keyed by the
batch (`xid` `batch-<id>`: the ledger takes a key once, INSERT OR IGNORE / ON CONFLICT DO NOTHING), written before
the batch is marked billed in its store (store.py). A gateway killed between the two writes the same row again at
its next look, and the ledger keeps one; killed before the first, it bills at its next look. Both stores allowing,
one transaction would do; the batch's store and the ledger are two SQLite files, so the key does it. The one caller
that marks the batch tells the request line, the metrics and the named key's spend (`tell`), once."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from ...accounts import Credential
from ...exchange import Attempt, ClientRequest, Exchange, KeyUse, Result
from ...settings.config import Config
from . import lines
from ...stores.batches import FILE, BatchStore, Record

log = logging.getLogger("qwen")

TERMINAL = ("completed", "failed", "expired", "cancelled")
Fetch = Callable[[Credential, str, Config], Awaitable[tuple[int, bytes]]]  # a results file's content: (status, bytes)
Write = Callable[[Exchange], Awaitable[None]]  # the bill's ledger row, written now (raises when it cannot be)


def bill_id(batch_id: str) -> str:
    """The bill's key in the ledger (its `xid`): one per batch."""
    return f"batch-{batch_id}"


class BatchBills:
    def __init__(self, write: Write, tell: Callable[[Exchange], None]) -> None:
        self.write, self.tell = write, tell

    async def settle(self, store: BatchStore, record: Record, batch: dict, cred: Credential, config: Config,
                     fetch: Fetch) -> Exchange | None:
        """Bills `record`'s batch if Qwen has ended it (`batch`: Qwen's object) and it is not billed yet: its bill
        (an exchange of its own) when this call billed it, else None. What fails (Qwen, the ledger) leaves it to
        the next look."""
        if record.billed or batch.get("status") not in TERMINAL:
            return None
        try:
            return await self._settle(store, record, batch, cred, config, fetch)
        except Exception as e:  # the next look tries again; a storage outage is said by its health
            log.debug("qwen: batch %s not billed yet: %s", record.id, type(e).__name__)
            return None

    async def _settle(self, store: BatchStore, record: Record, batch: dict, cred: Credential, config: Config,
                      fetch: Fetch) -> Exchange | None:
        out = batch.get("output_file_id")
        results = await store.get(out, record.owner, FILE) if isinstance(out, str) and out else None
        if not out or (results is not None and results.billed):  # nothing ran; or billed by its results file
            await store.settled(record.id)
            return None
        status, data = await fetch(cred, out, config)
        if status == 404:  # its results deleted before any gateway read them: nothing left to count
            log.warning("qwen: batch %s ended, but its results file %s is gone: its cost is not in the ledger",
                        record.id, out)
            await store.settled(record.id)
            return None
        if status != 200:
            return None
        usage, cost, unit = await lines.priced(data, self._price(cred, config), record.upstream_model)
        if not usage["prompt_tokens"] + usage["completion_tokens"]:
            await store.settled(record.id)
            return None
        bill = _bill(record, cred, usage, cost, unit)
        await self.write(bill)  # before the mark: a crash between the two writes the same row again, taken once
        if not await store.settled(record.id):
            return None  # another look (another gateway) marked it: it told the observers
        self.tell(bill)
        return bill

    @staticmethod
    def _price(cred: Credential, config: Config) -> lines.Price:
        lists = config.models.accounts  # the account's own list from Qwen prices first (models/listed.py)
        return lambda model, usage: config.prices.cost(cred.billing, model, usage, batch=True,
                                                       listed=lists.listed_tiers(cred.account, model))


def _bill(record: Record, cred: Credential, usage: dict, cost: float | None, unit: str) -> Exchange:
    """The bill as an exchange of its own: the batch's owner, account, models and usage, its cost."""
    path = f"/v1/batches/{record.id}"
    started = time.monotonic()  # a record made whole, its parts built as they are: no turn runs it
    bill = Exchange(ClientRequest("GET", path, path), route="batches", requested_model=record.model,
                    id=bill_id(record.id), started=started, key=KeyUse(name=record.owner),
                    attempt=Attempt(cred=cred, model=record.upstream_model),
                    result=Result(status=200, ended=started, usage=usage, cost=cost, cost_unit=unit))
    bill.notes.append(f"batch results billed: {usage['prompt_tokens']} prompt and {usage['completion_tokens']} "
                      f"completion tokens at the batch rate")
    return bill
