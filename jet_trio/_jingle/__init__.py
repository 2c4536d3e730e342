"""Jingle (XEP-0166): the session state machine and the message model, without I/O."""
