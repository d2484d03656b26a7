"""CIDs: parsing, encoding, and the CIDv0 <-> 32-byte digest convention the contracts use.

Only what the project needs is supported: CIDv0 (base58btc dag-pb sha2-256) and CIDv1 in base32 / base58btc /
base16 with the sha2-256 multihash. The codecs and multibases are written out here (a few lines each) so the
embedded node imports nothing beyond the standard library and starts fast.

    >>> digest_to_cid(cid_to_digest("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"))
    'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o'
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from fedchain.errors import FedchainError


class InvalidCidError(FedchainError, ValueError):
    """Raised when a string or byte string is not a CID this project can use."""

DAG_PB = 0x70
RAW = 0x55
SHA2_256 = 0x12
DIGEST_SIZE = 32

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
_CODEC_NAMES = {DAG_PB: "dag-pb", RAW: "raw"}
_MAX_CID_TEXT = 200  # far above any sha2-256 CID; bounds the work spent on garbage


# ---------------------------------------------------------------- varints and bases


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, as used by multiformats and protobuf."""
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Read an unsigned varint at `pos`; return (value, position after it). Raises ValueError if truncated."""
    value = shift = 0
    end = len(buf)
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def b58encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    chars = []
    while num:
        num, rem = divmod(num, 58)
        chars.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(chars))


def b58decode(text: str) -> bytes:
    num = 0
    for c in text:
        try:
            num = num * 58 + _B58_INDEX[c]
        except KeyError:
            raise ValueError(f"invalid base58 character {c!r}") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def _b32decode(text: str) -> bytes:
    text = text.upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


# ---------------------------------------------------------------- the CID value


@dataclass(frozen=True)
class Cid:
    """A parsed CID: version, content codec, and the sha2-256 digest of the block."""

    version: int
    codec: int
    digest: bytes

    @property
    def multihash(self) -> bytes:
        return bytes((SHA2_256, DIGEST_SIZE)) + self.digest

    @property
    def codec_name(self) -> str:
        return _CODEC_NAMES.get(self.codec, hex(self.codec))

    def to_bytes(self) -> bytes:
        """Binary form, as it appears in dag-pb links (CIDv0: the bare multihash)."""
        if self.version == 0:
            return self.multihash
        return encode_varint(1) + encode_varint(self.codec) + self.multihash

    def encode(self) -> str:
        """Canonical text form: base58btc for v0, base32 lower-case ('b' prefix) for v1."""
        if self.version == 0:
            return b58encode(self.multihash)
        return "b" + base64.b32encode(self.to_bytes()).decode("ascii").lower().rstrip("=")

    def to_v1(self) -> Cid:
        return Cid(1, self.codec, self.digest)

    def to_v0(self) -> Cid:
        if self.codec != DAG_PB:
            raise InvalidCidError(f"only dag-pb CIDs have a CIDv0 form; {self} is {self.codec_name}")
        return Cid(0, DAG_PB, self.digest)

    def __str__(self) -> str:
        return self.encode()


def make_cid(version: int, codec: int, digest: bytes) -> Cid:
    if len(digest) != DIGEST_SIZE:
        raise InvalidCidError(f"a sha2-256 digest has 32 bytes, got {len(digest)}")
    if version == 0 and codec != DAG_PB:
        raise InvalidCidError("CIDv0 is always dag-pb")
    return Cid(version, codec, bytes(digest))


# ---------------------------------------------------------------- parsing


def _parse_multihash(raw: bytes, pos: int, original: object) -> bytes:
    code, pos = decode_varint(raw, pos)
    length, pos = decode_varint(raw, pos)
    if code != SHA2_256 or length != DIGEST_SIZE:
        raise InvalidCidError(
            f"{original!r}: only sha2-256 multihashes are supported (got code {hex(code)}, length {length})"
        )
    if len(raw) - pos != DIGEST_SIZE:
        raise InvalidCidError(f"{original!r}: multihash length does not match its digest")
    return raw[pos:]


def cid_from_bytes(raw: bytes) -> Cid:
    """Parse a binary CID (a bare multihash is read as CIDv0)."""
    raw = bytes(raw)
    try:
        if len(raw) == 34 and raw[0] == SHA2_256 and raw[1] == DIGEST_SIZE:
            return Cid(0, DAG_PB, raw[2:])
        version, pos = decode_varint(raw, 0)
        if version != 1:
            raise InvalidCidError(f"unsupported CID version {version}")
        codec, pos = decode_varint(raw, pos)
        return Cid(1, codec, _parse_multihash(raw, pos, "0x" + raw.hex()))
    except ValueError as exc:
        if isinstance(exc, InvalidCidError):
            raise
        raise InvalidCidError(f"not a binary CID: {exc}") from None


def _decoded_cid(raw: bytes, text: str) -> Cid:
    try:
        return cid_from_bytes(raw)
    except InvalidCidError as exc:  # name the text given, not its decoded bytes
        raise InvalidCidError(f"{text!r}: {str(exc).split(': ', 1)[-1]}") from None


def parse_cid(s: str | Cid) -> Cid:
    """Parse a CID string (CIDv0 'Qm…', or CIDv1 in base32 'b…', base58btc 'z…' or base16 'f…').

    Raises:
        InvalidCidError: for anything else, with the offending text in the message.
    """
    if isinstance(s, Cid):
        return s
    if not isinstance(s, str):
        raise InvalidCidError(f"a CID must be a string, got {type(s).__name__}")
    if not s or len(s) > _MAX_CID_TEXT or not s.isascii() or not s.isalnum():
        raise InvalidCidError(f"not a CID: {s[:80]!r}; a CID looks like Qm… (46 characters) or bafy…")
    try:
        if len(s) == 46 and s.startswith("Qm"):
            raw = b58decode(s)
            if len(raw) != 34 or raw[:2] != b"\x12\x20":
                raise InvalidCidError(f"not a CIDv0: {s!r}")
            return Cid(0, DAG_PB, raw[2:])
        prefix, body = s[0], s[1:]
        if prefix in "bB":
            raw = _b32decode(body)
        elif prefix == "z":
            raw = b58decode(body)
        elif prefix in "fF":
            raw = bytes.fromhex(body)
        else:
            raise InvalidCidError(f"not a CID (unknown multibase prefix {prefix!r}): {s!r}")
    except (ValueError, base64.binascii.Error) as exc:  # type: ignore[attr-defined]
        if isinstance(exc, InvalidCidError):
            raise
        raise InvalidCidError(f"not a CID: {s!r} ({exc})") from None
    cid = _decoded_cid(raw, s)
    if cid.version != 1:
        raise InvalidCidError(f"not a CIDv1: {s!r}")
    return cid


def is_cid(s: str) -> bool:
    try:
        parse_cid(s)
    except InvalidCidError:
        return False
    return True


def parse_ipfs_path(arg: str) -> Cid:
    """Parse a `?arg=` path of the RPC API: a bare CID or `/ipfs/<cid>`. Nothing else (no sub-paths, no files).

    Raises:
        InvalidCidError: for sub-paths, `..`, absolute file paths, IPNS names and anything that is not a CID.
    """
    text = arg.strip()
    if text.startswith("/ipfs/"):
        text = text[len("/ipfs/") :].rstrip("/")
    if "/" in text or "\\" in text:
        raise InvalidCidError(f"invalid path {arg!r}: only a CID or /ipfs/<cid> is supported (no sub-paths)")
    return parse_cid(text)


# ---------------------------------------------------------------- the chain convention


def digest_to_cid(digest: bytes) -> str:
    """The CIDv0 of a 32-byte sha2-256 digest stored on chain."""
    if not isinstance(digest, (bytes, bytearray)) or len(digest) != DIGEST_SIZE:
        raise InvalidCidError(f"an on-chain content digest has 32 bytes, got {digest!r:.80}")
    return Cid(0, DAG_PB, bytes(digest)).encode()


def cid_to_digest(cid: str | Cid) -> bytes:
    """The 32-byte digest to store on chain for a CIDv0, or a CIDv1 dag-pb sha2-256 (same block).

    Raises:
        InvalidCidError: for raw-codec CIDs (they would not round-trip through CIDv0) and non-CIDs.
    """
    parsed = parse_cid(cid)
    if parsed.codec != DAG_PB:
        raise InvalidCidError(
            f"{parsed} is a {parsed.codec_name} CID; the chain stores dag-pb digests: add with cid-version 0"
        )
    return parsed.digest


def cid_to_v0(cid: str | Cid) -> str:
    return parse_cid(cid).to_v0().encode()


def cid_to_v1(cid: str | Cid) -> str:
    return parse_cid(cid).to_v1().encode()
