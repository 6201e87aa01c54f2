"""A named key's budgets on its request (tenancy/budgets.py declares them; tenancy/team.py runs this part of the
Team): the budgets that count the request, checked from memory and then held against every running request's
(tenancy/holds.py); what its answer delivered put on its hold before its end goes out (the shared database); the
hold released with its spend; and nothing unpriced where a USD budget counts (`priced_only`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ..models.model_map import LiveModels, ModelMap
from ..pricing.prices import PriceTable
from ..turn import outcome
from . import budgets, refusals
from .holds import Costs, Delivered, Holds, ceiling, delivered
from .ring import KeyRecord
from .spend import SpendBook

if TYPE_CHECKING:
    from ..exchange import Exchange

log = logging.getLogger("qwen")


class BudgetChecks:
    """The Team's budgets: the attributes below are the Team's (tenancy/source.py replaces the book and holds)."""

    book: SpendBook
    holds: Holds
    costs: Costs
    prices: PriceTable
    lists: LiveModels
    models: ModelMap | None
    counts_down: str

    def model_of(self, ex: Exchange) -> str:
        """The model a request goes to: as sent, once an account was chosen; before, as the model map and the route
        name it (an account may send another, its own default for `coder-model`: the attempt's check then counts
        the model as sent, `priced_only`)."""
        if ex.attempt.model:
            return ex.attempt.model
        routed = ex.routed.model if ex.routed is not None else ""
        return routed or (self.models.resolve(ex.requested_model) if self.models is not None else ex.requested_model)

    async def hold_budgets(self, ex: Exchange, rec: KeyRecord, want: int) -> None:
        """The budgets that count the request: refused when one is reached, else held (`ex.key.hold`)."""
        if not (lines := budgets.lines(rec, model := self.model_of(ex))):
            return
        spent = self.book.spent(rec.name)
        counted = [budgets.spent_on(line, spent) for line in lines]
        refusals.over_budget(ex.dialect, rec.name, lines, counted)  # from memory: no I/O
        ex.key.hold = await self._hold(ex, rec, want, lines, counted, model)
        if self.holds.shared:  # what it delivers is on its hold before its end goes out (tenancy/holds.py)
            outcome.before_end(ex, self._delivering)

    async def _hold(self, ex: Exchange, rec: KeyRecord, prompt: int, lines: list[budgets.Line], spent: list[float],
                    model: str) -> list:
        """The request's hold on its key's budgets (`lines`), counted with every running request's (every
        gateway's on the shared database): [hold, probe]. Raises the refusal when a budget is reached."""
        tokens_only = all(line.budget.counts == budgets.TOKENS for line in lines)
        (tokens, usd), probe = await self.costs.expected(
            rec.name, prompt, ceiling(ex.chat_body, prompt) if tokens_only else None)
        try:
            hold, counted = await self.holds.take(rec.name, tokens, usd, lines, spent, self.book.day, model)
        except Exception as e:  # never counted alone: the other gateways' spend is not known here
            if probe:
                self.costs.probed(rec.name)
            log.warning("qwen: could not count key %s's budget in the shared database: %s", rec.name, type(e).__name__)
            self.counts_down = type(e).__name__
            raise refusals.counts_unreachable(rec) from None
        self.counts_down = ""
        if hold is None:
            if probe:
                self.costs.probed(rec.name)
            refusals.over_budget(ex.dialect, rec.name, lines, counted)
            raise refusals.spent_budget(lines[0], rec.name, counted[0], ex.dialect)  # not reached: `over` said which
        return [hold, probe]

    def _delivering(self, ex: Exchange) -> Awaitable[None] | None:
        """A stream's end is parked: what it cost (Qwen's usage, priced) goes on its hold first."""
        held, cred = ex.key.hold, ex.attempt.cred
        cost = delivered(self.prices, cred.billing, ex.attempt.model, outcome.stream_usage(ex), held[0],
                         self.book.day, self.lists.listed_tiers(cred.account, ex.attempt.model)) \
            if held and cred is not None else None
        return self.holds.mark(held[0], cost) if held and cost is not None else None

    def _release(self, ex: Exchange, tokens: int = 0, usd: float = 0.0) -> None:
        """The request's hold ends: its cost learned (when it has one: what it delivered), the next request's probe
        let go; a whole answer's end waits until that cost is on its hold."""
        held = ex.key.hold
        if not held:
            return
        hold, probe = held
        ex.key.hold = None
        if tokens > 0:
            self.costs.learn(hold.name, tokens, usd)
        marked = self.holds.release(hold, Delivered(hold.name, self.book.day, tokens, usd, hold.model)
                                    if tokens > 0 else None)
        if marked is not None:
            outcome.kept_too(ex, marked)
        if probe:
            self.costs.probed(hold.name)

    def priced_only(self, ex: Exchange) -> None:
        """The engine's check of each attempt of a key with a USD budget, once the account and the model as sent
        are known: a budget of one model that the entrance did not hold for (it named another model) refuses when
        what the key spent on the model as sent reached it (from memory); a USD budget that counts the request
        refuses it when nothing prices it, since its cost could not count."""
        rec, model = ex.key.record, ex.attempt.model
        lines = budgets.lines(rec, model) if isinstance(rec, KeyRecord) else [budgets.Line(budgets.MONTHLY_USD, "", 0)]
        held = ex.key.hold
        if isinstance(rec, KeyRecord) and (late := [line for line in lines if line.model and not (
                held and held[0].model == model)]):
            spent = self.book.spent(rec.name)
            refusals.over_budget(ex.dialect, rec.name, late, [budgets.spent_on(line, spent) for line in late])
        cred = ex.attempt.cred
        if cred is None or self.prices.priced(cred.billing, model) or self.lists.listed_tiers(cred.account, model):
            return
        if usd := [line for line in lines if line.budget.counts == budgets.USD]:  # (no record: refused, as before)
            raise refusals.unpriced(ex.key.name, model, usd[0])
