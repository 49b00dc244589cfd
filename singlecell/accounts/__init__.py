"""Accounts, chosen by the store's URL: ``open_accounts("sqlite:////srv/singlecell/singlecell.db")``."""

from __future__ import annotations

from singlecell.accounts.base import Accounts, ApiToken, LoginSession, User
from singlecell.accounts.sql import SqlAccounts

__all__ = ["Accounts", "ApiToken", "LoginSession", "User", "open_accounts"]


def open_accounts(url: str) -> Accounts:
    """The accounts kept in the database ``url`` names (the Store's); its schema is the Store's."""
    return SqlAccounts(url)
