"""FastAPI: a route cached and retried by ``@opero``; ``AllFailedError`` becomes HTTP 503.

Build the app with the coroutine that asks your upstream service for a price,
e.g. ``app = create_app(fetch_price=quotes_client.price)``, and serve it with any
ASGI server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from opero import AllFailedError, opero

#: Asks the upstream service for the price of a symbol; ``None`` if it does not know it.
PriceSource = Callable[[str], Awaitable[float | None]]


class Quote(BaseModel):
    """What ``GET /quotes/{symbol}`` returns."""

    symbol: str
    price: float


def create_app(fetch_price: PriceSource, *, min_delay: float = 0.2) -> FastAPI:
    """An app whose quote route retries a flaky upstream and caches answers for a minute."""
    app = FastAPI(title="quotes")

    @app.exception_handler(AllFailedError)
    async def upstream_unavailable(request: Request, exc: AllFailedError) -> JSONResponse:
        # Clients learn that the upstream is down and when to come back; the
        # individual errors stay in the server's log.
        return JSONResponse(
            status_code=503,
            content={"detail": "quote service unavailable", "attempts": exc.attempt_count},
            headers={"Retry-After": "30"},
        )

    # @opero goes below the route decorator, so FastAPI registers the resilient
    # function; it sees the original signature through functools.wraps.
    @app.get("/quotes/{symbol}")
    @opero(
        cache=True,
        cache_ttl=60,
        retries=2,
        min_delay=min_delay,
        retry_on=(ConnectionError, TimeoutError),
    )
    async def get_quote(symbol: str) -> Quote:
        price = await fetch_price(symbol)
        if price is None:
            # Not in retry_on: passes through opero at once and FastAPI answers 404.
            raise HTTPException(status_code=404, detail="unknown symbol")
        return Quote(symbol=symbol, price=price)

    return app
