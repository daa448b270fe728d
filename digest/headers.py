"""Header encoding done by hand, because the standard library gets it wrong.

CPython's folder has emitted adjacent encoded words with no white space
between them (gh-144156; Yahoo rejected such mail), so digest writes its own
RFC 2047 encoded words and folds them itself (MAIL-RULES 7–8):

* every encoded word is at most 75 characters (RFC 2047 §2);
* a line that holds encoded words is at most 76 characters;
* encoded words are always separated by folding white space, which a
  decoder drops (RFC 2047 §6.2), so decoding gives back the exact text;
* text never brings its own line breaks into a header (``clean_text``).
"""

from __future__ import annotations

import base64
import re
import unicodedata

import idna

from digest.errors import ComposeError

ENCODED_WORD_MAX = 75
ENCODED_LINE_MAX = 76
_PREFIX = "=?utf-8?b?"
_SUFFIX = "?="
# RFC 5322 atext plus space: a phrase made only of these needs no quoting.
_ATOM_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
_SPACE_RUN = re.compile(r"\s+")


def clean_text(value: str, limit: int = 200) -> str:
    """One line of untrusted text fit for a header: control and format
    characters (CR, LF, NUL, bidi overrides, U+2028…) become spaces, runs of
    white space collapse, and the result is cut at ``limit`` characters."""
    if value.isprintable() and len(value) <= limit:
        # The common case: no control or format characters; only spaces to tidy.
        return " ".join(value.split())
    chars = []
    for ch in value:
        category = unicodedata.category(ch)
        # Cc: controls incl. CR/LF; Zl/Zp: U+2028/2029; Cf: bidi overrides and
        # other invisible formatting — except ZWJ, which joins emoji sequences.
        if category in ("Cc", "Zl", "Zp", "Cs") or (category == "Cf" and ch != "\u200d"):
            chars.append(" ")
        else:
            chars.append(ch)
    text = _SPACE_RUN.sub(" ", "".join(chars)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def encoded_words(text: str, first_line_room: int) -> list[str]:
    """Split ``text`` into RFC 2047 "B" encoded words, never cutting a UTF-8
    sequence. The first word fits in ``first_line_room`` characters (what is
    left on the header's first line), the others in 75."""
    words: list[str] = []
    chunk = b""
    room = min(first_line_room, ENCODED_WORD_MAX)
    whole = text.encode("utf-8")
    if len(whole) <= _payload_bytes(room):  # most names and subjects: one word
        return [_word(whole)]
    for ch in text:
        encoded = ch.encode("utf-8")
        while chunk and len(chunk) + len(encoded) > _payload_bytes(room):
            # Break after a space where there is one: RFC 2047 decoders drop the
            # folding white space between words, but some (CPython's address
            # parser among them) keep it, and then a mid-word break reads "Пет ров".
            cut = chunk.rfind(b" ") + 1
            if cut <= 0 or cut == len(chunk):
                cut = len(chunk)
            words.append(_word(chunk[:cut]))
            chunk = chunk[cut:]
            room = ENCODED_WORD_MAX
        chunk += encoded
    if chunk or not words:
        words.append(_word(chunk))
    return words


def _payload_bytes(room: int) -> int:
    # base64 turns 3 bytes into 4 characters; the rest of the room is the wrapper.
    return max((room - len(_PREFIX) - len(_SUFFIX)) // 4 * 3, 3)


def _word(chunk: bytes) -> str:
    return _PREFIX + base64.b64encode(chunk).decode("ascii") + _SUFFIX


def fold_words(name: str, words: list[str]) -> str:
    """``Name: w1\\r\\n w2\\r\\n w3`` — each word on its own line, separated by FWS."""
    return f"{name}: " + "\r\n ".join(words)


def unstructured(name: str, text: str, limit: int = 300) -> bytes:
    """A complete unstructured header line (Subject, …) as wire bytes with CRLF."""
    text = clean_text(text, limit)
    if _plain(text) and len(name) + 2 + len(text) <= ENCODED_LINE_MAX:
        return f"{name}: {text}\r\n".encode("ascii")
    words = encoded_words(text, ENCODED_LINE_MAX - len(name) - 2)
    return (fold_words(name, words) + "\r\n").encode("ascii")


def _plain(text: str) -> bool:
    # Text that looks like an encoded word would be decoded by the reader's
    # client; it is encoded itself so that it reads back exactly as written.
    return bool(_PRINTABLE_ASCII.match(text)) and "=?" not in text


def phrase(text: str, first_line_room: int) -> str:
    """A display name: an atom phrase, a quoted string, or encoded words."""
    text = clean_text(text, 78)
    if not text:
        return ""
    if _ATOM_PHRASE.match(text) and _plain(text):
        return text
    if _plain(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "\r\n ".join(encoded_words(text, first_line_room))


def ascii_address(address: str) -> str:
    """An address that must be ASCII (our own: From, the return path)."""
    wire = envelope_address(address)
    if not wire.isascii():
        raise ComposeError(f"{address}: the local part is not ASCII")
    return wire


def envelope_address(address: str) -> str:
    """The address as it goes on the wire: the domain as IDNA2008 A-labels
    (MAIL-RULES 13). A local part that is not ASCII (``иван@``) stays UTF-8: that
    message is sent with SMTPUTF8 (RFC 6531), and only that one."""
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise ComposeError(f"not an address: {address!r}")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ComposeError(f"{address}: bad international domain: {exc}") from None
    if any(c in address for c in "\r\n\0<>,; \t"):
        raise ComposeError(f"{address!r}: characters that cannot be in an address")
    return f"{local}@{domain}"


def mailbox(name: str | None, address: str, header: str) -> bytes:
    """A complete ``To:``/``From:`` line: ``Name: phrase <addr>`` folded so that
    lines holding encoded words stay within 76 characters. An address whose local
    part is not ASCII is written in UTF-8 as it was given (RFC 6532), domain and
    all; every other address is ASCII, its domain in A-labels."""
    addr = envelope_address(address)
    if not addr.isascii():
        addr = address
    shown = phrase(name or "", ENCODED_LINE_MAX - len(header) - 2)
    if not shown:
        return f"{header}: {addr}\r\n".encode()
    last_line = shown.rsplit("\r\n", 1)[-1]
    first = len(header) + 2 if "\r\n" not in shown else 0
    if first + len(last_line) + len(addr) + 3 <= ENCODED_LINE_MAX:
        return f"{header}: {shown} <{addr}>\r\n".encode()
    return f"{header}: {shown}\r\n <{addr}>\r\n".encode()
