"""Who asked, and what went wrong: the node endpoint's one server interceptor.

Every call is logged at INFO with its method, the peer's address and the subject CN of the
client's certificate. A servicer raises Berth's own errors (``berth.errors``); this module is
the one place that turns them into gRPC statuses, with the message as the details and the
error's type in the trailing metadata (``berth-error-type``), so a client tells a daemon's
answer from a transport failure (``berth.endpoint.client.call_failure``). Any other exception
is logged with its traceback and answered INTERNAL with a generic message: a stack trace or a
host path is no business of the client's.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import grpc

from berth.endpoint.client import ERROR_TYPE_KEY
from berth.errors import (
    BerthError,
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    NotModified,
    Unavailable,
)

log = logging.getLogger(__name__)

# Berth's error classes as gRPC statuses (anything else: INTERNAL). Checked with isinstance,
# in order, so a subclass maps as its class does.
STATUS_OF_ERROR: tuple[tuple[type[BerthError], grpc.StatusCode], ...] = (
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (InvalidParameter, grpc.StatusCode.INVALID_ARGUMENT),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (NotModified, grpc.StatusCode.FAILED_PRECONDITION),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)
INTERNAL_MESSAGE = "internal error in the node endpoint (see the node agent's log)"


def status_of(error: BerthError) -> grpc.StatusCode:
    """The gRPC status a servicer's ``error`` is answered with (``System``, others: INTERNAL)."""
    for cls, code in STATUS_OF_ERROR:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def client_name(context: grpc.aio.ServicerContext) -> str:
    """The subject CN of the client's verified certificate, or ``-`` on a plaintext channel."""
    names = context.auth_context().get("x509_common_name") or []
    return ", ".join(name.decode(errors="replace") for name in names) or "-"


async def _answer_failure(context: grpc.aio.ServicerContext, method: str, err: Exception) -> None:
    """Abort the call with the status ``err`` maps to (raises, as ``context.abort`` does)."""
    if isinstance(err, BerthError):
        code = status_of(err)
        if code is grpc.StatusCode.INTERNAL:
            log.error("node endpoint: %s failed: %s: %s", method, err.type, err.message)
        else:
            log.info("node endpoint: %s answered %s: %s", method, code.name, err.message)
        await context.abort(code, err.message, trailing_metadata=((ERROR_TYPE_KEY, err.type),))
    log.error("node endpoint: %s failed", method, exc_info=err)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _log_call(context: grpc.aio.ServicerContext, method: str) -> None:
    log.info("node endpoint: %s from %s (%s)", method, context.peer(), client_name(context))


def _guard_unary_response(
    behaviour: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """``behaviour`` (a coroutine function: one response, or responses by ``context.write``)
    with the call logged and its errors answered as statuses."""

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        _log_call(context, method)
        try:
            return await behaviour(request, context)
        except grpc.aio.AbortError:
            raise  # the servicer aborted with a status of its own
        except Exception as err:
            await _answer_failure(context, method, err)

    return guarded


def _guard_stream_response(
    behaviour: Callable[[Any, grpc.aio.ServicerContext], AsyncGenerator[Any, None]], method: str
) -> Callable[[Any, grpc.aio.ServicerContext], AsyncGenerator[Any, None]]:
    """``behaviour`` (an async generator function) with the call logged and its errors
    answered as statuses, also after it yielded some responses."""

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncGenerator[Any, None]:
        _log_call(context, method)
        responses = behaviour(request, context)
        try:
            async for response in responses:
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            await _answer_failure(context, method, err)
        finally:
            # Closed now, not when collected: a client that left must see the servicer's own
            # clean-up (a mount holder released, an exec killed) run at once.
            await responses.aclose()

    return guarded


def _guard(behaviour: Any, method: str) -> Any:
    # grpc.aio tells a streaming handler by its kind: an async generator function yields its
    # responses, a coroutine function returns one (or writes them); the wrapper keeps the kind.
    if inspect.isasyncgenfunction(behaviour):
        return _guard_stream_response(behaviour, method)
    return _guard_unary_response(behaviour, method)


class CallGuard(grpc.aio.ServerInterceptor):
    """Log every call with who asked; answer Berth's errors as gRPC statuses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # no such method: grpc answers UNIMPLEMENTED
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=_guard(handler.unary_unary, method))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=_guard(handler.unary_stream, method))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=_guard(handler.stream_unary, method))
        return handler._replace(stream_stream=_guard(handler.stream_stream, method))
