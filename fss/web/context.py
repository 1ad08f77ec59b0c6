"""What every request of one `fss web` process shares: settings, clock, database engine."""

from __future__ import annotations

import threading
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from fss.config import Settings
from fss.domain.clock import Clock, SystemClock
from fss.queue_depths import QueueDepths
from fss.store.engine import create_engine, normalize_url
from fss.web.config import WebSettings


class WebContext:
    """Created once per app; the engine is made on first use, never at import."""

    def __init__(self, settings: Settings, web: WebSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.web = web
        self.clock: Clock = clock or SystemClock()
        self._engine: Engine | None = None
        self._queue_depths: QueueDepths | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = create_engine(self.settings.database_url)
            return self._engine

    @property
    def queue_depths(self) -> QueueDepths:
        """Broker queue depths, made on first use (one connection per process, cached 1 s)."""
        with self._lock:
            if self._queue_depths is None:
                self._queue_depths = QueueDepths(self.settings.broker_url)
            return self._queue_depths

    @property
    def database_is_sqlite(self) -> bool:
        return sa.engine.make_url(normalize_url(self.settings.database_url)).get_backend_name() == (
            "sqlite"
        )

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
            if self._queue_depths is not None:
                self._queue_depths.close()
                self._queue_depths = None


def web_context(request: Request) -> WebContext:
    context: WebContext = request.app.state.context
    return context


Context = Annotated[WebContext, Depends(web_context)]
