"""The ``websocket`` section: what happens to open WebSockets when a migration rolls back."""

from __future__ import annotations

from cutover.config.base import SectionConfig


class WebSocketConfig(SectionConfig):
    # On a rollback, close the sockets open on the migration's to with code 1012 (service
    # restart), so clients reconnect and the handshake goes to from. False: they stay open.
    close_on_rollback: bool = False
