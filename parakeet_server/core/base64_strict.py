"""One strict base64 decoder for every JSON path that carries bytes.

protobuf's `json_format` (and Python's `base64.b64decode` without `validate=True`) skip characters
outside the alphabet, so `"!!!"` became 0 bytes and `"UklG!!!RiQ="` silently became other bytes.
This decoder accepts what the proto3 JSON mapping allows and nothing more: the standard (`+/`) or
the URL-safe (`-_`) alphabet, with or without `=` padding, and line breaks and spaces between
characters (base64 wrapped by `base64` without `-w0`). Anything else is an error that says what is
wrong and where.
"""

from __future__ import annotations

import binascii
import re

from parakeet_server.core.errors import InvalidRequest

_WHITESPACE = b" \t\r\n"
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/\-_= \t\r\n]")
_URL_SAFE = b"-_"
_STANDARD = b"+/"
_TO_STANDARD = bytes.maketrans(_URL_SAFE, _STANDARD)


class InvalidBase64(ValueError):
    """The text is not base64; the message says why (which character, or what about its length)."""


def _bad_character(value: str | bytes) -> InvalidBase64 | None:
    """The first character outside the alphabet, by position in the text as sent (error path only)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    found = _NOT_BASE64.search(text)
    if found is None:
        return None
    return InvalidBase64(f"{found.group()!r} at character {found.start()} is not a base64 character")


def decode_base64_strict(value: str | bytes) -> bytes:
    """The bytes `value` encodes, or InvalidBase64 naming the problem; never skips a character."""
    if not value.isascii():
        raise _bad_character(value) or InvalidBase64("it contains non-ASCII characters")
    data = value.encode("ascii") if isinstance(value, str) else bytes(value)
    if any(space in data for space in _WHITESPACE):  # `in` is a fast scan; strip only when needed
        data = data.translate(None, _WHITESPACE)
    url_safe = any(c in data for c in _URL_SAFE)
    if url_safe and any(c in data for c in _STANDARD):
        raise InvalidBase64("it mixes the standard (+/) and URL-safe (-_) base64 alphabets")
    if url_safe:
        data = data.translate(_TO_STANDARD)
    body = data.rstrip(b"=")
    padding = len(data) - len(body)
    if b"=" in body:
        raise _bad_character(value) or InvalidBase64("it has '=' padding before its end")
    if len(body) % 4 == 1:
        raise _bad_character(value) or InvalidBase64(
            f"the number of base64 characters ({len(body)}) is one more than a multiple of 4, "
            "which no bytes encode: the text is cut short or has a stray character"
        )
    missing = -len(body) % 4
    if padding and padding != missing:
        raise _bad_character(value) or InvalidBase64(f"it ends in {padding} '=' where {missing} belong")
    try:
        return binascii.a2b_base64(body + b"=" * missing, strict_mode=True)
    except binascii.Error:
        raise _bad_character(value) or InvalidBase64("it has '=' padding before its end") from None


def decode_base64_field(value: str | bytes, field: str) -> bytes:
    """`decode_base64_strict` for a named request field: InvalidRequest (INVALID_ARGUMENT) naming it."""
    try:
        return decode_base64_strict(value)
    except InvalidBase64 as error:
        raise InvalidRequest(f"'{field}' is not valid base64: {error}", reason="INVALID_BASE64") from None
