"""POST /v1/journal-entries answered before Litestar's routing, for the usual request.

Litestar's request handling around the route (routing, the before-request
checks, dependency injection, body parsing, response building) cost ~150-200 µs
of the event loop's ~650 µs per posted entry (benchmarks/post_http). A request
that needs none of what that machinery decides goes straight to the one-round-
trip statement (adapters/http/hot_path.py) from here, inside
adapters.http.operations' wrapper (request id, metrics, audit row, access log).

Only a request that provably passes every check Litestar would make is answered
here: a JSON body small, flat and free of NUL escapes (adapters.input_limits
would skip it), no query string, a bearer key in the key cache whose role may
post and whose book has no rate limit, a valid Idempotency-Key or none, a body
that decodes to `JournalEntryIn` with a date and builds a valid entry naming no
customer or document. Anything else — and nothing has been written then — goes
to Litestar with the body replayed, which answers as it always did. When the
statement declines (a used key, an unknown account) or raises, the route is
told so through the scope's state: it goes the general way, or raises that
same exception for the app's exception handlers (problem+json, 503s).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import msgspec

from adapters.http.commands import MAX_KEY_LENGTH
from adapters.http.hot_path import needs_no_reads, post_entry_once
from adapters.http.ledger_api import (
    HOT_PATH_DECLINED,
    HOT_PATH_ERROR,
    JournalEntryIn,
    to_entry,
)
from adapters.http.routes import _json_media
from adapters.input_limits import MAX_DEPTH, MAX_METADATA_BYTES, NUL_ESCAPE
from adapters.keys import Permission
from ledger.errors import LedgerError

PATH = "/v1/journal-entries"

Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]

_decoder = msgspec.json.Decoder(JournalEntryIn)


def _replaying(messages: list[Any], receive: Receive) -> Receive:
    """`receive`, first giving back the messages already taken from it."""
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def answer(state: Any, scope: Any, receive: Receive, send: Send) -> Receive | None:
    """Answer the request (None), or say it is Litestar's to answer: the receive
    that Litestar must read the request from."""
    if scope.get("query_string") or scope.get("root_path"):
        return receive
    cache = state.get("key_cache")
    if cache is None:
        return receive
    authorization = content_type = key_header = None
    for name, value in scope["headers"]:
        if b"\0" in value:  # check_input names the header
            return receive
        if name == b"authorization":
            if authorization is not None:
                return receive
            authorization = value
        elif name == b"content-type":
            if content_type is not None:
                return receive
            content_type = value
        elif name == b"idempotency-key":
            if key_header is not None:
                return receive
            key_header = value
    if content_type is not None and not _json_media(content_type.decode("latin-1")):
        return receive
    if authorization is None:
        return receive
    scheme, _, bearer = authorization.decode("latin-1").partition(" ")
    bearer = bearer.strip()
    if scheme.lower() != "bearer" or not bearer:
        return receive
    principal = cache.cached(bearer)
    if (
        principal is None
        or principal.rate_limit is not None
        or not principal.may(Permission.POST_JOURNAL)
    ):
        return receive
    key = None if key_header is None else key_header.decode("latin-1")
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        return receive

    messages: list[Any] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return _replaying(messages, receive)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_METADATA_BYTES:
            return _replaying(messages, receive)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if NUL_ESCAPE in body or body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        return _replaying(messages, receive)
    try:
        data = _decoder.decode(body)
    except msgspec.MsgspecError:
        return _replaying(messages, receive)
    if data.effective_date is None:
        return _replaying(messages, receive)
    try:
        entry = to_entry(data, date.min, key)
    except LedgerError:
        return _replaying(messages, receive)
    if not needs_no_reads(entry):
        return _replaying(messages, receive)

    request_state = scope.setdefault("state", {})
    request_state["principal"] = principal  # for the audit row and the access log
    try:
        content = await post_entry_once(
            state.hot_pool, PATH, principal, data, entry, key, request_state
        )
    except Exception as exc:  # the route raises it, for the app's exception handlers
        request_state[HOT_PATH_ERROR] = exc
        return _replaying(messages, receive)
    if content is None:  # nothing written: the general way answers
        request_state[HOT_PATH_DECLINED] = True
        return _replaying(messages, receive)
    scope["path_template"] = PATH  # the metrics' route label, as Litestar sets it
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content, "more_body": False})
    return None
