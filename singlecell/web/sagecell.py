"""SageMathCell's HTTP interfaces, for its clients and embedding pages: ``POST /service`` (one
computation, answered when it is over) and ``POST /kernel`` with the WebSocket
``/kernel/<id>/channels`` (a kernel to talk to, as ``sagecell-client.py`` does).

``/service`` runs its code as a one-shot cell (``/eval``'s path) and answers as SageMathCell
does: ``{"success", "stdout", "stderr", "execute_reply"}``, a stream present only when the cell
wrote to it, ``success`` false for an error or a cell stopped by a limit. ``/kernel`` starts a
Jupyter client's kernel (:mod:`singlecell.web.kernels`) and answers ``{"id", "ws_url"}``; its
WebSocket is the kernel API's. Sage itself is not here: code that needs it fails as Python.
Nothing needs ``accepted_tos``: this server has no terms to accept.
"""

from __future__ import annotations

from typing import Any

from singlecell import protocol
from singlecell.errors import BadRequest, NotFound, PayloadTooLarge
from singlecell.store.base import NewRequest, Status
from singlecell.web.handlers import BodyHandler, Services, check_code_size
from singlecell.web.kernels import KernelAccess, KernelChannels, shut_down, start_kernel

MAX_SERVICE_CODE = 65000  # characters, SageMathCell's limit for /service
SERVICE_TIMEOUT = 30.0  # seconds, as SageMathCell's /service


def form_fields(handler: BodyHandler) -> Any:
    """The body's fields: an HTML form, as SageMathCell's clients send them, or JSON."""
    if "json" in handler.request.headers.get("Content-Type", ""):
        return handler.json_body()
    return handler.form()


class ServiceHandler(BodyHandler):
    """``POST /service`` with form fields ``code`` (and ``accepted_tos``, ignored)."""

    def body_limit(self) -> int:
        return 4 * MAX_SERVICE_CODE + 4096  # a form's percent-encoding may quadruple it

    async def accept(self, *args: str) -> None:
        fields = form_fields(self)
        if not isinstance(fields, dict):
            raise BadRequest("send the form field code (application/x-www-form-urlencoded), as SageMathCell takes it")
        code = fields.get("code")
        if not isinstance(code, str):
            raise BadRequest("the form field code is missing: POST /service with code=<Python>")
        if len(code) > MAX_SERVICE_CODE:
            raise PayloadTooLarge(f"Max code size is {MAX_SERVICE_CODE} characters")
        services = self.services
        config = services.config
        check_code_size(code, config)  # and /eval's own checks: --max-code-size, text only
        client = self.request.remote_ip or ""
        caller = self.caller()
        message = protocol.execute_request(code, client=client)
        request_id = protocol.request_id(message)
        timeout = min(SERVICE_TIMEOUT, config.time_limit)
        first = services.submit(NewRequest(request_id, message, timeout, client=client, quota_key=caller.quota.key),
                                wait=True, quota=caller.quota)
        assert first is not None
        record = await services.wait_until_done(request_id, timeout + 60.0, first, self.absolute(""))
        self.send_json(service_answer(record.status, [m.message for m in services.store.get_messages(request_id)]))


def service_answer(status: Status, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """What SageMathCell's /service answers, from a finished cell's messages."""
    answer: dict[str, Any] = {}
    for msg in messages:
        if msg["msg_type"] == "stream":
            name = str(msg["content"].get("name", "stdout"))
            answer[name] = answer.get(name, "") + str(msg["content"].get("text", ""))
        elif msg["msg_type"] == "execute_reply":
            answer["execute_reply"] = msg["content"]
    answer["success"] = status is Status.DONE
    return answer


class SageKernelHandler(KernelAccess, BodyHandler):
    """``POST /kernel`` → ``{"id", "ws_url"}`` (also with ``method=DELETE``, ending it)."""

    async def accept(self, *args: str) -> None:
        fields = form_fields(self)
        fields = fields if isinstance(fields, dict) else {}
        kernel_id = args[0] if args and args[0] else ""
        if fields.get("method") == "DELETE" or self.get_argument("method", "") == "DELETE":
            await self._stop(kernel_id)
            return
        if kernel_id:
            raise BadRequest(f"POST /kernel/{kernel_id} only ends a kernel, with method=DELETE; "
                             "start one with POST /kernel")
        record = await start_kernel(self.services, self.who(), self.request.remote_ip or "", self.absolute(""))
        ws_url = f"{self.request.protocol.replace('http', 'ws', 1)}://{self.request.host}/"
        self.set_header("Jupyter-Kernel-ID", protocol.kernel_id(record.id))
        self.send_json({"id": protocol.kernel_id(record.id), "ws_url": ws_url})

    async def delete(self, kernel_id: str = "") -> None:
        await self._stop(kernel_id)

    async def _stop(self, kernel_id: str) -> None:
        owner = self.owner()
        try:
            record = self.kernel(kernel_id, owner)
        except NotFound:  # SageMathCell answers a DELETE of an unknown kernel quietly
            record = None
        if record is not None:
            await shut_down(self.services, record)
        self.send_json({})


def sagecell_routes(services: Services) -> list[Any]:
    args = {"services": services}
    return [
        (r"/service", ServiceHandler, args),
        (r"/kernel/?()", SageKernelHandler, args),
        (r"/kernel/([^/]+)/channels", KernelChannels, args),
        (r"/kernel/([^/]+)/?", SageKernelHandler, args),
    ]


__all__ = ["sagecell_routes"]
