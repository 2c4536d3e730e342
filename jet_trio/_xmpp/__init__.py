"""XMPP: XML parsing, stanzas, stream negotiation, connection set-up and the client core."""
