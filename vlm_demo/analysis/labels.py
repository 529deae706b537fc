"""Readable, reversible labels for tokenizer pieces (byte-level BPE and SentencePiece vocabularies)."""

from __future__ import annotations

import re

SPACE_MARK = "\u2423"  # shown for a space inside token labels
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", " ": SPACE_MARK, SPACE_MARK: "\\u2423"}
_UNESCAPES = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def _byte_tables() -> tuple[dict[int, str], dict[str, int]]:
    """GPT-2's byte <-> printable-character table that byte-level BPE vocabularies are written in."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), ord("\xff") + 1)]
    codes, shifted = list(kept), 0
    for byte in range(256):
        if byte not in kept:  # unprintable bytes map to chr(256), chr(257), ...
            kept.append(byte)
            codes.append(256 + shifted)
            shifted += 1
    encoder = {byte: chr(code) for byte, code in zip(kept, codes)}
    return encoder, {char: byte for byte, char in encoder.items()}


BYTE_ENCODER, BYTE_DECODER = _byte_tables()


def readable(data: bytes) -> str:
    """A one-line, reversible label: spaces as the open-box sign, controls and stray UTF-8 bytes escaped."""
    out = []
    for char in data.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not (yet) valid UTF-8, e.g. half a CJK character
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not char.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def unreadable(label: str) -> bytes:
    """The bytes a `readable` label stands for."""
    chars, index = [], 0
    while index < len(label):
        char = label[index]
        if char == SPACE_MARK:
            chars.append(" ")
        elif char == "\\":
            kind = label[index + 1]
            width = {"x": 2, "u": 4, "U": 8}.get(kind, 0)
            if kind in _UNESCAPES:
                chars.append(_UNESCAPES[kind])
            elif width:
                code = int(label[index + 2:index + 2 + width], 16)
                chars.append(chr(0xDC00 + code) if kind == "x" else chr(code))
            else:
                raise ValueError(f"bad escape in token label {label!r}")
            index += 1 + width
        else:
            chars.append(char)
        index += 1
    return "".join(chars).encode("utf-8", "surrogateescape")


def piece_bytes(piece: str, byte_level: bool) -> bytes:
    """The bytes a tokenizer piece stands for (byte-level BPE, SentencePiece '<0xNN>' bytes and '\u2581' spaces)."""
    if byte_level and all(char in BYTE_DECODER for char in piece):
        return bytes(BYTE_DECODER[char] for char in piece)
    match = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
    return bytes([int(match[1], 16)]) if match else piece.replace("\u2581", " ").encode("utf-8")


def label_piece(label: str, byte_level: bool) -> str:
    """Inverse of `readable(piece_bytes(piece))`: the tokenizer piece a label names."""
    data = unreadable(label)
    if byte_level:
        return "".join(BYTE_ENCODER[byte] for byte in data)
    if len(data) == 1 and data[0] >= 0x80:
        return f"<0x{data[0]:02X}>"
    return data.decode("utf-8", "surrogateescape").replace(" ", "\u2581")


def is_byte_level(tokenizer) -> bool:
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    return "ByteLevel" in repr(decoder) or "\u0120the" in (tokenizer.get_vocab() if tokenizer is not None else {})

