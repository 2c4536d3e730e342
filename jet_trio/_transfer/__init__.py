"""Jingle File Transfer (XEP-0234): file descriptions, hashes, partial files and the service."""
