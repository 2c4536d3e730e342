"""jet-trio: end-to-end encrypted file transfer over XMPP (XEP-0391) on trio."""

from ._errors import JetError, LocalProtocolError, ProtocolError, RemoteProtocolError, SecurityError, XMLError
from ._jid import JID, InvalidJID

__version__ = "0.1.0.dev0"

__all__ = [
    "JID",
    "InvalidJID",
    "JetError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SecurityError",
    "XMLError",
    "__version__",
]
