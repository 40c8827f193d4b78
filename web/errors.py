"""The HTTP API's errors, one shape everywhere — ``{"error": {"code", "message",
"field"}}`` — whatever raised them: a service's refusal (``ApiError``), FastAPI's request
validation, an unknown route or method, a body too large, a client gone, or the database
or broker being unreachable (503, ``Retry-After``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.commands import INVALID, NOT_FOUND
from services.outages import is_infrastructure
from web.dependencies import ApiError, error

MAX_BODY = 1024 * 1024  # bytes of a request body


class BodyLimit:
    """Refuses a request body larger than MAX_BODY with 413, whatever it claims."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return await error(413, "too_large", f"the body is larger than {MAX_BODY} "
                                                 "bytes")(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
            return message

        await self.app(scope, limited, send)


def install(app: FastAPI) -> None:
    """The body limit, the error handlers and the outage answer, on ``app``."""
    app.add_middleware(BodyLimit)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> Response:
        # The client went away while its body was read — or was timed out by the server
        # (web/server.py), which has answered 408 and closed the connection. Not an error
        # of the server: nothing to log, and this answer goes nowhere (uvicorn drops what
        # is sent on a disconnected request).
        return error(408, "timeout", "the client disconnected before its body arrived")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error(422, INVALID, f"{where + ': ' if where else ''}"
                                   f"{first.get('msg', 'invalid request')}", where)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: NOT_FOUND, 405: "method_not_allowed"}.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of every route of this path
            headers["Allow"] = ", ".join(_methods(request))
        return error(exc.status_code, code, str(exc.detail), headers=headers)

    @app.middleware("http")
    async def outages(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        try:
            return await call_next(request)
        except ApiError as exc:  # raised by the body limit, below the handlers
            return error(exc.status, exc.code, exc.message, exc.field)
        except Exception as exc:
            if is_infrastructure(exc):
                return error(503, "unavailable", "the database or the broker is unreachable: "
                                                 "try again", headers={"Retry-After": "5"})
            raise


def _methods(request: Request) -> list[str]:
    """The methods of every route of the request's path."""
    found: set[str] = set()
    for route in request.app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            found.update(getattr(route, "methods", None) or ())
    return sorted(found)
