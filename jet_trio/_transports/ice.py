"""STUN and TURN servers for the WebRTC data channel (a light module: no aiortc, no asyncio)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IceServer"]


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server for the WebRTC data channel (``open_file_transfer(ice_servers=)``):
    ``urls`` like ``stun:host:3478`` or ``turn:host:3478?transport=udp``; a TURN server needs
    its ``username`` and ``credential``. Servers the account's server announces (XEP-0215) are
    used as well."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("an ICE server needs at least one URL")
        for url in self.urls:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError(f"ICE server URL {url!r} is not stun:, stuns:, turn: or turns:")
            if url.startswith("turn") and (self.username is None or self.credential is None):
                raise ValueError(f"TURN server {url!r} needs a username and a credential")

    @property
    def is_turn(self) -> bool:
        """Whether this is a TURN server (a relay)."""
        return any(u.startswith("turn") for u in self.urls)
