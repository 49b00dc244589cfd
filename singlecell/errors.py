"""Every error the project raises on purpose, under one base class.

Each error knows its HTTP status and a short machine-readable ``code``; its message is written
for the person who has to fix the request (or the deployment). The web tier turns any
:class:`SingleCellError` into ``{"error": {"code", "message"}}`` in one place.
"""

from __future__ import annotations


class SingleCellError(Exception):
    """Base class. ``status`` is the HTTP status the web tier answers with."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SingleCellError, ValueError):
    status = 400
    code = "bad_request"


class PayloadTooLarge(SingleCellError, ValueError):
    status = 413
    code = "too_large"


class Forbidden(SingleCellError):
    """The request comes from a page whose origin the server does not serve (``--cors-origins``)."""

    status = 403
    code = "origin_not_allowed"


class Unauthorized(SingleCellError):
    """The request needs an account: log in, or send ``Authorization: Bearer <token>``."""

    status = 401
    code = "unauthorized"


class NotAllowed(SingleCellError, PermissionError):
    """The account may not do this (another owner's snippet, say)."""

    status = 403
    code = "forbidden"


class NotFound(SingleCellError, KeyError):
    status = 404
    code = "not_found"

    def __str__(self) -> str:  # KeyError quotes its argument; we want the sentence
        return self.message


class QueueFull(SingleCellError):
    """More requests are waiting than the server accepts; retry after ``retry_after`` s."""

    status = 503
    code = "queue_full"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyRequests(SingleCellError):
    """A rate limit (sign-ups, logins, comments); retry after ``retry_after`` s."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(SingleCellError):
    """What the request would make exists already (a user name, say)."""

    status = 409
    code = "conflict"


class DuplicateRequest(SingleCellError):
    status = 409
    code = "duplicate"


class SessionEnded(SingleCellError):
    """An input for a cell whose session is over (or never began): run the cell again."""

    status = 409
    code = "session_ended"


class TooManySessions(TooManyRequests):
    """A client holds as many live sessions as it may."""

    code = "too_many_sessions"


class QuotaExceeded(TooManyRequests):
    """A client (an API token, or an address without one) is past one of its limits
    (singlecell/quotas.py): ``limit`` names which, ``rate``, ``max_running`` or ``cpu_per_day``."""

    code = "limit_exceeded"

    def __init__(self, message: str, limit: str, retry_after: int = 1) -> None:
        super().__init__(message, retry_after)
        self.limit = limit


class CallbackRefused(BadRequest):
    """A ``callback_url`` the server will not call: not http(s), or an address it must not reach."""

    code = "callback_refused"


class StillRunning(SingleCellError):
    """``/eval`` gave up waiting; the request goes on and its output URL stays valid."""

    status = 504
    code = "still_running"


class ConfigError(SingleCellError, ValueError):
    """A setting is missing or invalid; raised before anything starts."""

    code = "config"


class UnknownBackend(ConfigError):
    """A store or filestore URL names a scheme no backend handles."""


class KernelUnavailable(SingleCellError, RuntimeError):
    """A device cannot get a kernel: its template died or forks keep failing, or every kernel
    uid of its range is in use on the host."""

    status = 503
    code = "no_kernel"


class StoreUnavailable(SingleCellError, ConnectionError):
    """The store cannot be reached (a database restarting, a network gone) or stayed locked past
    its busy timeout; nothing was done, and the same call may be retried."""

    status = 503
    code = "store_unavailable"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SandboxError(SingleCellError, RuntimeError):
    """A sandbox layer could not be applied."""

    code = "sandbox"
