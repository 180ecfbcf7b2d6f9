"""What Chromium saw of its WebSocket handshakes, from its performance log
(the DevTools protocol's ``Network.*`` events, enabled by the ``browser``
fixture with ``goog:loggingPrefs`` ``{"performance": "ALL"}``).

This looks only at the browser side: which ``Sec-WebSocket-Extensions``
header the server's 101 carried, whatever the server's API."""

from __future__ import annotations

import dataclasses
import json
import typing as t


@dataclasses.dataclass
class Handshake:
    """One WebSocket the page opened, as Chromium's network stack saw it."""

    request_id: str
    url: str = ""
    status: int | None = None
    #: Response headers with lower-case names (values as Chromium gives them:
    #: a header sent twice is one value with the parts joined by newlines).
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def extensions(self) -> list[str]:
        """The extensions the server accepted, one string each, e.g.
        ``["permessage-deflate; client_max_window_bits=15"]``."""
        value = self.headers.get("sec-websocket-extensions", "")
        return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]

    @property
    def permessage_deflate(self) -> bool:
        """Whether the server accepted permessage-deflate (RFC 7692)."""
        return any(ext.split(";")[0].strip().lower() == "permessage-deflate" for ext in self.extensions)


class HandshakeLog:
    """Collects the WebSocket handshakes of one driver.

    Chromium's performance log is drained by each read, so keep one
    ``HandshakeLog`` per driver and call ``read()`` whenever it may have grown."""

    def __init__(self, driver: t.Any) -> None:
        self._driver = driver
        self._by_id: dict[str, Handshake] = {}

    def read(self) -> list[Handshake]:
        """Every handshake seen so far whose response has arrived, oldest first."""
        for entry in self._driver.get_log("performance"):
            event = json.loads(entry["message"])["message"]
            params = event.get("params", {})
            method = event.get("method")
            if method == "Network.webSocketCreated":
                self._handshake(params["requestId"]).url = params.get("url", "")
            elif method == "Network.webSocketHandshakeResponseReceived":
                response = params.get("response", {})
                handshake = self._handshake(params["requestId"])
                handshake.status = response.get("status")
                handshake.headers = {
                    str(name).lower(): str(value) for name, value in response.get("headers", {}).items()
                }
        return [h for h in self._by_id.values() if h.status is not None]

    def _handshake(self, request_id: str) -> Handshake:
        return self._by_id.setdefault(request_id, Handshake(request_id))
