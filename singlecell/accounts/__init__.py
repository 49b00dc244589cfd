"""Accounts, chosen by the store's URL: ``open_accounts("sqlite:////srv/singlecell/singlecell.db")``,
``open_accounts("mongodb://db.example/singlecell")``."""

from __future__ import annotations

from singlecell.accounts.base import Accounts, ApiToken, LoginSession, User
from singlecell.accounts.mongo import MongoAccounts
from singlecell.accounts.sql import SqlAccounts

__all__ = ["Accounts", "ApiToken", "LoginSession", "User", "open_accounts"]


def open_accounts(url: str) -> Accounts:
    """The accounts kept in the database ``url`` names (the Store's); its schema is the Store's."""
    if url.partition(":")[0].partition("+")[0].lower() == "mongodb":
        return MongoAccounts(url)
    return SqlAccounts(url)
