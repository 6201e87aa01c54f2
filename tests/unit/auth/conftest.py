"""The accounts' shared fixtures (tests/helpers/account_fixtures.py): settings with nothing reachable, a fresh state."""

from helpers.account_fixtures import settings, state  # noqa: F401
