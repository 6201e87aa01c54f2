"""Key accounts of one Alibaba Cloud account (`qwen-auth add-key … --group NAME`): Model Studio counts its
rate limits and a Coding Plan its quotas per Alibaba Cloud account, summed over all of its keys, so what
runs out for one key has run out for its siblings too. Two keys of one account are not two capacities."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ...auth.account import Account
from ...auth.state import AccountState

Groups = Mapping[str, tuple[str, ...]]  # account -> every account of its group, itself included


def group_map(accounts: Iterable[Account]) -> dict[str, tuple[str, ...]]:
    """Each account's group (an ungrouped account is a group of its own)."""
    groups: dict[str, list[str]] = {}
    for acct in accounts:
        groups.setdefault(getattr(acct, "group", None) or f"\0{acct.name}", []).append(acct.name)
    return {name: tuple(members) for members in groups.values() for name in members}


def siblings(groups: Groups, account: str) -> tuple[str, ...]:
    return groups.get(account, (account,))


def cool(state: AccountState, groups: Groups, account: str, until: float, why: str) -> None:
    """`account` and its group cool down until `until`; the siblings' state says through which key."""
    for member in siblings(groups, account):
        state.set(member, cooldown_until=until, last_error=why if member == account else
                  f"{why}; through {account}, a key of the same Alibaba Cloud account (group)")
