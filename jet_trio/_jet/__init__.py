"""Jingle Encrypted Transports (XEP-0391): ciphers, envelopes,
the security element, stream wrappers."""
