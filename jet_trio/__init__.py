"""jet-trio: end-to-end encrypted file transfer over XMPP (XEP-0391) on trio."""

# The public names are imported on first use (PEP 562), not with the package: the command-line
# tool's start-up (``jet-trio --help``) and the plugins' imports then load only the modules they
# need. The imports below are what type checkers and ``from jet_trio import *`` see.

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Public name -> the private module that defines it.
_LAZY: dict[str, str] = {
    "Client": "_client",
    "IqHandler": "_client",
    "open_client": "_client",
    "INSECURE_TEST_ONLY": "_connect",
    "ConnectionFailed": "_connect",
    "DNSError": "_connect",
    "LoginTimeout": "_connect",
    "DiscoInfo": "_disco",
    "DiscoItem": "_disco",
    "Identity": "_disco",
    "JetError": "_errors",
    "LocalProtocolError": "_errors",
    "ProtocolError": "_errors",
    "RemoteProtocolError": "_errors",
    "SecurityError": "_errors",
    "XMLError": "_errors",
    "JID": "_jid",
    "InvalidJID": "_jid",
    "ConnectionLost": "_negotiation",
    "TLSError": "_negotiation",
    "PubSubEvent": "_pubsub",
    "PubSubItem": "_pubsub",
    "AuthenticationError": "_sasl",
    "DowngradeDetected": "_sasl",
    "NoCommonMechanism": "_sasl",
    "StanzaError": "_stanza",
    "StreamError": "_stanza",
    "FileTransfer": "_transfer",
    "IncomingOffer": "_transfer",
    "envelope_strength": "_transfer",
    "open_file_transfer": "_transfer",
    "Partial": "_transfer_files",
    "find_partials": "_transfer_files",
    "IntegrityError": "_transfer_types",
    "JETError": "_transfer_types",
    "NameTaken": "_transfer_types",
    "TagTimeout": "_transfer_types",
    "ProgressCallback": "_transfer_types",
    "TransferCancelled": "_transfer_types",
    "TransferDeclined": "_transfer_types",
    "TransferError": "_transfer_types",
    "TransferResult": "_transfer_types",
    "TransferTimeout": "_transfer_types",
    "TransportFailed": "_transfer_types",
}


# Hidden from type checkers: for them the names are the imports above, so a misspelt name is
# still an error.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # later lookups do not come here again
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
