"""XML namespace constants used across jet-trio (one place, no string literals elsewhere)."""

from typing import Final

STREAM: Final = "http://etherx.jabber.org/streams"
CLIENT: Final = "jabber:client"
SERVER: Final = "jabber:server"
STREAMS_ERR: Final = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS_ERR: Final = "urn:ietf:params:xml:ns:xmpp-stanzas"
TLS: Final = "urn:ietf:params:xml:ns:xmpp-tls"
SASL: Final = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND: Final = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION: Final = "urn:ietf:params:xml:ns:xmpp-session"
XML: Final = "http://www.w3.org/XML/1998/namespace"

DISCO_INFO: Final = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS: Final = "http://jabber.org/protocol/disco#items"
CAPS: Final = "http://jabber.org/protocol/caps"
PING: Final = "urn:xmpp:ping"
PUBSUB: Final = "http://jabber.org/protocol/pubsub"
PUBSUB_EVENT: Final = "http://jabber.org/protocol/pubsub#event"
PUBSUB_OWNER: Final = "http://jabber.org/protocol/pubsub#owner"
PUBSUB_ERRORS: Final = "http://jabber.org/protocol/pubsub#errors"
DATA_FORMS: Final = "jabber:x:data"
ROSTER: Final = "jabber:iq:roster"

JINGLE: Final = "urn:xmpp:jingle:1"
JINGLE_ERRORS: Final = "urn:xmpp:jingle:errors:1"
JINGLE_FT: Final = "urn:xmpp:jingle:apps:file-transfer:5"
JINGLE_S5B: Final = "urn:xmpp:jingle:transports:s5b:1"
JINGLE_IBB: Final = "urn:xmpp:jingle:transports:ibb:1"
BYTESTREAMS: Final = "http://jabber.org/protocol/bytestreams"
IBB: Final = "http://jabber.org/protocol/ibb"
HASHES: Final = "urn:xmpp:hashes:2"
HASH_SHA256: Final = "urn:xmpp:hash-function-text-names:sha-256"
HASH_SHA1: Final = "urn:xmpp:hash-function-text-names:sha-1"
HASH_SHA512: Final = "urn:xmpp:hash-function-text-names:sha-512"
HASH_BLAKE2B256: Final = "urn:xmpp:hash-function-text-names:id-blake2b256"
HASH_BLAKE2B512: Final = "urn:xmpp:hash-function-text-names:id-blake2b512"

JET: Final = "urn:xmpp:jingle:jet:0"
JET_STUB: Final = "urn:xmpp:encryption:stub:0"
JET_STUB_FEATURE: Final = "urn:xmpp:jingle:jet-stub:0"
JINGLE_FT_ERRORS: Final = "urn:xmpp:jingle:apps:file-transfer:errors:0"
#: jet-trio's own extension: the relative path of a file of a folder, inside the XEP-0234
#: ``<file/>`` (and the disco feature of a receiver that rebuilds folders from it).
JET_TRIO_TREE: Final = "urn:jet-trio:tree:0"

# JET ciphers (XEP-0391 section 5): sent without the ":0" that the table of the XEP writes.
CIPHER_AES128_GCM: Final = "urn:xmpp:ciphers:aes-128-gcm-nopadding"
CIPHER_AES256_GCM: Final = "urn:xmpp:ciphers:aes-256-gcm-nopadding"
