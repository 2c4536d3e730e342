"""Small element builders shared by the test server's sans-IO parts."""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree

from .._xmpp import ns as ns

Element = etree._Element


def default_nsmap(namespace: str) -> Mapping[str, str]:
    """``{None: namespace}``, typed as lxml-stubs expect (they wrongly reject the ``None`` key)."""
    return {None: namespace}  # type: ignore[dict-item]


def qname(namespace: str, name: str) -> str:
    """Clark notation: ``{namespace}name``."""
    return f"{{{namespace}}}{name}"


IQ = qname(ns.CLIENT, "iq")
MESSAGE = qname(ns.CLIENT, "message")
PRESENCE = qname(ns.CLIENT, "presence")


def make(
    tag: str, attrib: Mapping[str, str | None] | None = None, *, text: str | None = None
) -> Element:
    """A new element; ``None`` attribute values are left out."""
    namespace = etree.QName(tag).namespace
    el = etree.Element(tag, nsmap=default_nsmap(namespace) if namespace else None)
    for key, value in (attrib or {}).items():
        if value is not None:
            el.set(key, value)
    if text is not None:
        el.text = text
    return el


def sub(
    parent: Element,
    tag: str,
    attrib: Mapping[str, str | None] | None = None,
    *,
    text: str | None = None,
) -> Element:
    """A new child of ``parent``."""
    el = make(tag, attrib, text=text)
    parent.append(el)
    return el


def stanza(kind: str, attrib: Mapping[str, str | None]) -> Element:
    """A ``jabber:client`` stanza (``iq``, ``message`` or ``presence``)."""
    el = etree.Element(qname(ns.CLIENT, kind), nsmap=default_nsmap(ns.CLIENT))
    for key, value in attrib.items():
        if value is not None:
            el.set(key, value)
    return el


class StanzaError(Exception):
    """Raised by handlers to answer a stanza with an ``<error/>``."""

    def __init__(
        self, condition: str, error_type: str = "cancel", app: Element | None = None
    ) -> None:
        super().__init__(condition)
        self.condition = condition
        self.error_type = error_type
        self.app = app


def iq_result(request: Element, sender: str, payload: Element | None = None) -> Element:
    """The ``result`` answering ``request``, from ``sender`` to the request's sender."""
    el = stanza(
        "iq", {"type": "result", "id": request.get("id"), "from": sender, "to": request.get("from")}
    )
    if payload is not None:
        el.append(payload)
    return el


def error_reply(request: Element, sender: str, error: StanzaError) -> Element:
    """The ``type='error'`` reply to any stanza, from ``sender`` to the request's sender."""
    kind = etree.QName(request).localname
    el = stanza(
        kind, {"type": "error", "id": request.get("id"), "from": sender, "to": request.get("from")}
    )
    err = sub(el, qname(ns.CLIENT, "error"), {"type": error.error_type})
    sub(err, qname(ns.STANZAS_ERR, error.condition))
    if error.app is not None:
        err.append(error.app)
    return el


def stream_error(condition: str, text: str | None = None) -> Element:
    """A ``<stream:error/>`` with the RFC 6120 ``condition``."""
    el = etree.Element(qname(ns.STREAM, "error"), nsmap={"stream": ns.STREAM})
    sub(el, qname(ns.STREAMS_ERR, condition))
    if text is not None:
        sub(el, qname(ns.STREAMS_ERR, "text"), text=text)
    return el


def form_fields(form: Element) -> dict[str, str]:
    """The fields of a ``jabber:x:data`` form, multi-values joined by newlines."""
    out: dict[str, str] = {}
    for field in form.iterfind(qname(ns.DATA_FORMS, "field")):
        var = field.get("var")
        if var is None:
            continue
        values = [v.text or "" for v in field.iterfind(qname(ns.DATA_FORMS, "value"))]
        out[var] = "\n".join(values)
    return out


def make_form(form_type: str, fields: Mapping[str, str], kind: str = "form") -> Element:
    """A ``jabber:x:data`` form with a hidden ``FORM_TYPE``."""
    x = etree.Element(qname(ns.DATA_FORMS, "x"), nsmap=default_nsmap(ns.DATA_FORMS))
    x.set("type", kind)
    hidden = sub(x, qname(ns.DATA_FORMS, "field"), {"var": "FORM_TYPE", "type": "hidden"})
    sub(hidden, qname(ns.DATA_FORMS, "value"), text=form_type)
    for var, value in fields.items():
        field = sub(x, qname(ns.DATA_FORMS, "field"), {"var": var})
        sub(field, qname(ns.DATA_FORMS, "value"), text=value)
    return x
