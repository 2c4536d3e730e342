"""Transports: SOCKS5 bytestreams (XEP-0260/0065) and in-band bytestreams (XEP-0261/0047)."""
