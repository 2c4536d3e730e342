"""jet-trio: end-to-end encrypted file transfer over XMPP (XEP-0391) on trio."""

# The public names are imported on first use (PEP 562), not with the package: the command-line
# tool's start-up (``jet-trio --help``) and the plugins' imports then load only the modules they
# need. The imports below are what type checkers and ``from jet_trio import *`` see.

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._errors import (
        JetError,
        LocalProtocolError,
        ProtocolError,
        RemoteProtocolError,
        SecurityError,
        XMLError,
    )
    from ._plugins.guard import PluginError
    from ._transfer.batch import BatchItem, BatchProgress, BatchResult, FileOutcome, send_files
    from ._transfer.choice import envelope_strength
    from ._transfer.files import Partial, find_partials
    from ._transfer.paths import (
        PathBlocked,
        PathCollision,
        PathSet,
        UnsafePath,
        check_relative_path,
    )
    from ._transfer.service import (
        FileTransfer,
        IncomingOffer,
        ServedRequest,
        open_file_transfer,
    )
    from ._transfer.tree import FlatNames, TreeEntry, flat_items, walk_tree
    from ._transfer.types import (
        EncryptionFailed,
        IntegrityError,
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
    from ._transports.ice import IceServer
    from ._xmpp.client import Client, IqHandler, open_client
    from ._xmpp.connect import INSECURE_TEST_ONLY, ConnectionFailed, DNSError, LoginTimeout
    from ._xmpp.disco import DiscoInfo, DiscoItem, Identity
    from ._xmpp.jid import JID, InvalidJID
    from ._xmpp.negotiation import ConnectionLost, TLSError
    from ._xmpp.pubsub import PubSubEvent, PubSubItem
    from ._xmpp.sasl import AuthenticationError, DowngradeDetected, NoCommonMechanism
    from ._xmpp.stanza import StanzaError, StreamError

__version__ = "0.1.0.dev0"

__all__ = [
    "INSECURE_TEST_ONLY",
    "JID",
    "AuthenticationError",
    "BatchItem",
    "BatchProgress",
    "BatchResult",
    "Client",
    "ConnectionFailed",
    "ConnectionLost",
    "DNSError",
    "DiscoInfo",
    "DiscoItem",
    "DowngradeDetected",
    "EncryptionFailed",
    "FileOutcome",
    "FileTransfer",
    "FlatNames",
    "IceServer",
    "Identity",
    "IncomingOffer",
    "IntegrityError",
    "InvalidJID",
    "IqHandler",
    "JetError",
    "LocalProtocolError",
    "LoginTimeout",
    "NameTaken",
    "NoCommonMechanism",
    "Partial",
    "PathBlocked",
    "PathCollision",
    "PathSet",
    "PluginError",
    "ProgressCallback",
    "ProtocolError",
    "PubSubEvent",
    "PubSubItem",
    "RemoteProtocolError",
    "SecurityError",
    "ServedRequest",
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
    "TreeEntry",
    "UnsafePath",
    "XMLError",
    "__version__",
    "check_relative_path",
    "envelope_strength",
    "find_partials",
    "flat_items",
    "open_client",
    "open_file_transfer",
    "send_files",
    "walk_tree",
]

# Public name -> the private module that defines it.
_LAZY: dict[str, str] = {
    "Client": "_xmpp.client",
    "IqHandler": "_xmpp.client",
    "open_client": "_xmpp.client",
    "INSECURE_TEST_ONLY": "_xmpp.connect",
    "ConnectionFailed": "_xmpp.connect",
    "DNSError": "_xmpp.connect",
    "LoginTimeout": "_xmpp.connect",
    "DiscoInfo": "_xmpp.disco",
    "DiscoItem": "_xmpp.disco",
    "Identity": "_xmpp.disco",
    "JetError": "_errors",
    "LocalProtocolError": "_errors",
    "ProtocolError": "_errors",
    "RemoteProtocolError": "_errors",
    "SecurityError": "_errors",
    "XMLError": "_errors",
    "JID": "_xmpp.jid",
    "InvalidJID": "_xmpp.jid",
    "ConnectionLost": "_xmpp.negotiation",
    "TLSError": "_xmpp.negotiation",
    "PubSubEvent": "_xmpp.pubsub",
    "PubSubItem": "_xmpp.pubsub",
    "AuthenticationError": "_xmpp.sasl",
    "DowngradeDetected": "_xmpp.sasl",
    "NoCommonMechanism": "_xmpp.sasl",
    "StanzaError": "_xmpp.stanza",
    "StreamError": "_xmpp.stanza",
    "FileTransfer": "_transfer.service",
    "IncomingOffer": "_transfer.service",
    "ServedRequest": "_transfer.service",
    "envelope_strength": "_transfer.choice",
    "open_file_transfer": "_transfer.service",
    "Partial": "_transfer.files",
    "PluginError": "_plugins.guard",
    "find_partials": "_transfer.files",
    "IntegrityError": "_transfer.types",
    "EncryptionFailed": "_transfer.types",
    "NameTaken": "_transfer.types",
    "TagTimeout": "_transfer.types",
    "ProgressCallback": "_transfer.types",
    "TransferCancelled": "_transfer.types",
    "TransferDeclined": "_transfer.types",
    "TransferError": "_transfer.types",
    "TransferResult": "_transfer.types",
    "TransferTimeout": "_transfer.types",
    "TransportFailed": "_transfer.types",
    "BatchItem": "_transfer.batch",
    "BatchProgress": "_transfer.batch",
    "BatchResult": "_transfer.batch",
    "FileOutcome": "_transfer.batch",
    "send_files": "_transfer.batch",
    "PathBlocked": "_transfer.paths",
    "PathCollision": "_transfer.paths",
    "PathSet": "_transfer.paths",
    "UnsafePath": "_transfer.paths",
    "check_relative_path": "_transfer.paths",
    "FlatNames": "_transfer.tree",
    "TreeEntry": "_transfer.tree",
    "flat_items": "_transfer.tree",
    "walk_tree": "_transfer.tree",
    "IceServer": "_transports.ice",
}


# Hidden from type checkers: for them the names are the imports above, so a misspelt name is
# still an error.
if not TYPE_CHECKING:
    _DEPRECATED = {"JETError": ("EncryptionFailed", "_transfer.types")}

    def __getattr__(name: str) -> object:
        if name in _DEPRECATED:
            new, where = _DEPRECATED[name]
            import importlib
            import warnings

            warnings.warn(
                f"jet_trio.{name} is deprecated: use jet_trio.{new} (the same class)",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(f"{__name__}.{where}"), new)
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # later lookups do not come here again
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
