"""The web viewer: browse recorded runs and watch live ones token by token.

``runlog serve`` (or :func:`serve`) starts a uvicorn server on 127.0.0.1 running the
Starlette app from :func:`create_app`. The pages, scripts and styles are files in this
package (no CDN, no network at run time, no build step); live updates come through
Server-Sent Events driven by the store's change notifications, with the event ``seq``
as the SSE id so a reconnecting browser resumes exactly where it stopped.
``docs/web.md`` describes what a user sees and the JSON API the page uses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from runlog.api import Store
from runlog.web.app import LOOPBACK_HOSTS, close_streams, create_app, export_formats

__all__ = ["close_streams", "create_app", "export_formats", "is_loopback", "serve", "server_url"]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_url(host: str, port: int) -> str:
    """``http://host:port/`` with IPv6 addresses in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def serve(store: Store, *, host: str = "127.0.0.1", port: int = 8765,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the viewer for ``store`` until interrupted (Ctrl-C); blocks.

    Args:
        store: the open store to show (the caller closes it afterwards).
        host: the address to bind; loopback by default. Any other address exposes
            every recorded run, inputs and outputs included, to whoever can reach it:
            there is no authentication.
        port: the TCP port; 0 picks a free one (``on_ready`` receives the real URL).
        on_ready: called with the URL once the server accepts connections.
    """
    # Bound to a public address on purpose: accept any Host header.
    allowed = (*LOOPBACK_HOSTS, host) if is_loopback(host) else None
    app = create_app(store, allowed_hosts=allowed)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            access_log=False, lifespan="off",
                            # Open event streams never end by themselves: close them
                            # after a second instead of waiting forever on Ctrl-C.
                            timeout_graceful_shutdown=1)
    server = _Server(config, on_ready, app)
    server.run()


class _Server(uvicorn.Server):
    """uvicorn's Server, telling the caller the bound URL once it listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None] | None,
                 app: Starlette) -> None:
        super().__init__(config)
        self.on_ready = on_ready
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Open pages hold event streams that never end by themselves: end them first.
        close_streams(self.app)
        await super().shutdown(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_ready is not None:
            port = int(self.servers[0].sockets[0].getsockname()[1])
            self.on_ready(server_url(self.config.host, port))
