"""The HTTP API served by a real uvicorn server on a free port, in a thread of the test
process (its store, its broker, its clock): what races through the front door need — many
clients at once, each on its own connection — and what a test of half-sent requests needs
(a socket, not a test client)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from tests.servers import free_port
from web.app import create_app


@contextlib.contextmanager
def serving(**options: Any) -> Iterator[str]:
    """The app at ``http://127.0.0.1:PORT`` until the block ends; ``options`` go to
    ``uvicorn.Config`` (the web process's own settings by default)."""
    from web import server as web_server

    port = free_port()
    config = web_server.config(create_app(), host="127.0.0.1", port=port, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
