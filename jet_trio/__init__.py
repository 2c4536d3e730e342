"""jet-trio: end-to-end encrypted file transfer over XMPP (XEP-0391) on trio."""

from ._client import Client, IqHandler, open_client
from ._connect import INSECURE_TEST_ONLY, ConnectionFailed, DNSError, LoginTimeout
from ._disco import DiscoInfo, DiscoItem, Identity
from ._errors import (
    JetError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    SecurityError,
    XMLError,
)
from ._jid import JID, InvalidJID
from ._negotiation import ConnectionLost, TLSError
from ._pubsub import PubSubEvent, PubSubItem
from ._sasl import AuthenticationError, DowngradeDetected, NoCommonMechanism
from ._stanza import StanzaError, StreamError
from ._transfer import FileTransfer, IncomingOffer, envelope_strength, open_file_transfer
from ._transfer_files import Partial, find_partials
from ._transfer_types import (
    IntegrityError,
    JETError,
    NameTaken,
    ProgressCallback,
    TagTimeout,
    TransferCancelled,
    TransferDeclined,
    TransferError,
    TransferResult,
    TransferTimeout,
    TransportFailed,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "INSECURE_TEST_ONLY",
    "JID",
    "AuthenticationError",
    "Client",
    "ConnectionFailed",
    "ConnectionLost",
    "DNSError",
    "DiscoInfo",
    "DiscoItem",
    "DowngradeDetected",
    "FileTransfer",
    "Identity",
    "IncomingOffer",
    "IntegrityError",
    "InvalidJID",
    "IqHandler",
    "JETError",
    "JetError",
    "LocalProtocolError",
    "LoginTimeout",
    "NameTaken",
    "NoCommonMechanism",
    "Partial",
    "ProgressCallback",
    "ProtocolError",
    "PubSubEvent",
    "PubSubItem",
    "RemoteProtocolError",
    "SecurityError",
    "StanzaError",
    "StreamError",
    "TLSError",
    "TagTimeout",
    "TransferCancelled",
    "TransferDeclined",
    "TransferError",
    "TransferResult",
    "TransferTimeout",
    "TransportFailed",
    "XMLError",
    "__version__",
    "envelope_strength",
    "find_partials",
    "open_client",
    "open_file_transfer",
]
