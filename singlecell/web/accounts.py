"""Accounts on the web: sign up, log in and out (pages with forms), the account page (API
tokens), and ``/api/me`` and ``/api/tokens`` for scripts.

Passwords are hashed (Argon2id) in an executor, so a login does not hold the event loop. The
login session is a random token in an HttpOnly, SameSite=Lax cookie, Secure when the site is
served over https; every form carries tornado's XSRF token.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import tornado.web

from singlecell.accounts import Accounts, User
from singlecell.accounts.base import SESSION_SECONDS
from singlecell.errors import BadRequest, Conflict, NotFound, TooManyRequests, Unauthorized
from singlecell.web.handlers import SESSION_COOKIE, BodyHandler, PageMixin

SIGNUPS_PER_HOUR = 10  # per client address
LOGINS_PER_5_MINUTES = 10  # per client address, and per name


class AccountHandler(BodyHandler):
    @property
    def accounts(self) -> Accounts:
        if self.services.accounts is None:
            raise NotFound("this server has no accounts")
        return self.services.accounts

    def throttle(self, key: str, limit: int, seconds: int, what: str) -> None:
        wait = self.accounts.throttle(key, limit, seconds)
        if wait:
            raise TooManyRequests(f"too many {what} from here; try again in {wait} s", wait)

    def log_in(self, user: User) -> None:
        token, _ = self.accounts.start_session(user.id)
        # Secure when the site is https: by its public URL, or by how this request came (behind a proxy)
        secure = self.services.config.public_url.startswith("https:") or self.request.protocol == "https"
        self.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", secure=secure,
                        expires_days=SESSION_SECONDS / 86400, path="/")

    def next_url(self, form: dict[str, str]) -> str:
        """Where to go after the form: a path of this site only (never another site's URL)."""
        target = form.get("next") or self.get_argument("next", "") or "/library"
        parts = urllib.parse.urlsplit(target)
        if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
            return "/library"
        return target


class AccountPage(PageMixin, AccountHandler):
    """``/signup``, ``/login``, ``/logout`` and ``/account``."""

    def initialize(self, services: Any, action: str = "login") -> None:
        super().initialize(services)
        self.action = action

    def get(self) -> None:
        if self.action in ("signup", "login"):
            self.page(f"{self.action}.html", error=None, name="", next=self.next_url({}))
        elif self.action == "account":
            user = self.current_user
            if user is None:
                self.redirect("/login?next=/account")
                return
            self.page("account.html", tokens=self.accounts.tokens(user.id), new_token=None)
        else:
            raise tornado.web.HTTPError(405)

    async def accept(self, *args: str) -> None:
        self.check_xsrf_cookie()
        form = self.form()
        if self.action == "logout":
            token = self.get_cookie(SESSION_COOKIE)
            if token:
                self.accounts.end_session(token)
            self.clear_cookie(SESSION_COOKIE, path="/")
            self.redirect("/library", status=303)
            return
        if self.action == "account":
            await self.account(form)
            return
        name, password = form.get("name", "").strip(), form.get("password", "")
        address = self.request.remote_ip or "?"
        loop = asyncio.get_running_loop()
        try:
            if self.action == "signup":
                self.throttle(f"signup:{address}", SIGNUPS_PER_HOUR, 3600, "sign-ups")
                if password != form.get("password2", password):
                    raise BadRequest("the two passwords differ")
                user = await loop.run_in_executor(None, self.accounts.create_user, name, password)
            else:
                self.throttle(f"login:{address}", LOGINS_PER_5_MINUTES, 300, "logins")
                self.throttle(f"login-name:{name.casefold()}", LOGINS_PER_5_MINUTES, 300, "logins to this account")
                found = await loop.run_in_executor(None, self.accounts.authenticate, name, password)
                if found is None:
                    raise Unauthorized("that name and password do not match an account")
                user = found
        except (BadRequest, Conflict, Unauthorized) as exc:
            self.set_status(exc.status)
            self.page(f"{self.action}.html", error=exc.message, name=name, next=self.next_url(form))
            return
        self.log_in(user)
        self.redirect(self.next_url(form), status=303)

    async def account(self, form: dict[str, str]) -> None:
        user = self.current_user
        if user is None:
            raise Unauthorized("log in first")
        new_token = None
        if form.get("revoke"):
            self.accounts.revoke_token(user.id, form["revoke"])
        else:
            new_token, _ = self.accounts.create_token(user.id, form.get("label", "").strip()[:100] or "a script")
        self.page("account.html", tokens=self.accounts.tokens(user.id), new_token=new_token)


class MeApi(AccountHandler):
    """``GET /api/me``: who the cookie or token is."""

    def get(self) -> None:
        user = self.current_user
        if user is None:
            raise Unauthorized("not logged in, and no Bearer token")
        self.send_json({"id": user.id, "name": user.name, "created": user.created})


class TokensApi(AccountHandler):
    """``GET``/``POST /api/tokens`` (``{"label"}``): the caller's API tokens."""

    def get(self) -> None:
        user = self.current_user  # a read: no XSRF token needed with the cookie
        if user is None:
            raise Unauthorized("this needs an account: log in, or send Authorization: Bearer <token>")
        self.send_json({"tokens": [{"id": t.id, "label": t.label, "created": t.created, "revoked": t.revoked}
                                   for t in self.accounts.tokens(user.id)]})

    async def accept(self, *args: str) -> None:
        user = self.require_user()
        body = self.json_body()
        label = body.get("label", "") if isinstance(body, dict) else ""
        token, record = self.accounts.create_token(user.id, str(label)[:100] or "a script")
        self.send_json({"id": record.id, "label": record.label, "token": token}, 201)


class TokenApi(AccountHandler):
    """``DELETE /api/tokens/<id>``: revoke one of the caller's API tokens."""

    def delete(self, token_id: str) -> None:
        user = self.require_user()
        if not self.accounts.revoke_token(user.id, token_id):
            raise NotFound(f"you have no live token {token_id!r}")
        self.set_status(204)
        self.finish()


def account_routes(args: dict[str, Any]) -> list[Any]:
    return [
        (r"/signup", AccountPage, {**args, "action": "signup"}),
        (r"/login", AccountPage, {**args, "action": "login"}),
        (r"/logout", AccountPage, {**args, "action": "logout"}),
        (r"/account", AccountPage, {**args, "action": "account"}),
        (r"/api/me", MeApi, args),
        (r"/api/tokens", TokensApi, args),
        (r"/api/tokens/([0-9a-f]{16})", TokenApi, args),
    ]
