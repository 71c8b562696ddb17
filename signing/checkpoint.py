"""Signed tree heads of the results log: C2SP checkpoints inside C2SP signed notes, and the checks a relying party makes.

Why these formats: they are what Go's checksum database, Sigstore's Rekor and
the transparency-dev witnesses already speak, so a lab's log can be watched by
existing tools, and a relying party needs no ketqua code to check a checkpoint.

**Signed note** (c2sp.org/signed-note): UTF-8 text ending in a newline, a blank
line, then lines ``— <key name> <base64(key ID (4 bytes, big-endian) || signature)>``.
The signature covers the text including its final newline, not the blank line.

**Checkpoint** (c2sp.org/tlog-checkpoint): the note text is the origin line, the
tree size in decimal (no leading zeros), the base64 RFC 6962 root hash, then
optional non-empty extension lines.

**Signature types and key IDs**, as the signed-note specification assigns them:

* ``0x02``, ECDSA (the lab's P-256 key): "ECDSA signatures as implemented by
  github.com/transparency-dev/witness"; there the signature is ASN.1 DER
  ``ECDSA-Sig-Value`` over SHA-256 of the note text (for every allowed curve:
  P-256, P-384, P-521), and the key ID is, unlike the other types, the first
  four bytes of SHA-256 of the public key's DER SubjectPublicKeyInfo (no name,
  no type byte). This is what Rekor's checkpoints use; tests verify published
  Rekor and Pixel checkpoints with it. A ketqua :class:`~signing.signer.Signer`
  (key file or PKCS#11 token) already signs exactly that way.
* ``0x01``, Ed25519: key ID = SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4],
  signature RFC 8032 over the text (Go's sumdb/note; sum.golang.org).
* Not used: ``0x04`` (timestamped Ed25519 witness cosignatures), ``0x05`` (RFC 6962
  TreeHeadSignature of static CT logs), ``0xff`` (types without an assigned byte).

Verifier keys are written the sumdb way: ``<name>+<hex key ID>+<base64(type || public key)>``
with the public key as 32 raw bytes (Ed25519) or DER SPKI (ECDSA).

Verification follows the note rules: signatures of unknown keys (name *and* key
ID must match) are ignored; one of a known key that fails rejects the note; a
note no known key signed is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from signing.errors import (
    ForkDetected,
    NoteError,
    NoteSignatureError,
    ProofError,
    SigningError,
    VerificationError,
)
from signing.merkle import EMPTY_ROOT, HASH_SIZE, InclusionProof, b64, leaf_hash, verify_consistency, verify_inclusion
from signing.signer import Signer

#: Signature type bytes (c2sp.org/signed-note, "Signature types").
ED25519 = 0x01
ECDSA = 0x02
#: Curves type 0x02 admits.
_ECDSA_CURVES = {"secp256r1", "secp384r1", "secp521r1"}
#: A note larger than this is refused before parsing (a checkpoint is ~200 bytes).
MAX_NOTE_BYTES = 1 << 20
#: Signature lines accepted on one note; the specification asks for at least 16.
MAX_SIGNATURES = 64

_EM_DASH = "\u2014 "
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


# --------------------------------------------------------------------------- keys


def _spki(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _ed25519_raw(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def check_key_name(name: str) -> str:
    """A note key name: non-empty, no Unicode space, no ``+`` (it separates the parts of a verifier key)."""
    if not isinstance(name, str) or not name or "+" in name or any(c.isspace() for c in name) or _CONTROL.search(name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'", reason="bad-key-name")
    return name


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """The note key ID for a key: the type's rule (see the module docstring), as a big-endian uint32."""
    if sig_type == ECDSA:
        digest = hashlib.sha256(public_key).digest()
    else:
        digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _key_material(public_key: object, source: str) -> tuple[int, bytes]:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _ECDSA_CURVES:
            raise SigningError(f"{source}: signed-note ECDSA needs a P-256, P-384 or P-521 key, not {public_key.curve.name}")
        return ECDSA, _spki(public_key)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ED25519, _ed25519_raw(public_key)
    raise SigningError(
        f"{source}: a {type(public_key).__name__} cannot sign a note; the log needs an EC (P-256) or Ed25519 key"
    )


@dataclass(frozen=True)
class NoteVerifier:
    """One trusted key: its name, type, key ID and public key."""

    name: str
    sig_type: int
    key_id: int
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

    @classmethod
    def from_public_key(cls, name: str, public_key: object) -> NoteVerifier:
        """A verifier for ``name`` and a public key (e.g. ``certificate.public_key()`` of the lab's signer)."""
        sig_type, material = _key_material(public_key, f"note key {name!r}")
        return cls(check_key_name(name), sig_type, key_id(name, sig_type, material), public_key)  # type: ignore[arg-type]

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key ID>+<base64(type || public key)>``; the key ID must match the key."""
        parts = vkey.strip().split("+", 2) if isinstance(vkey, str) else []
        if len(parts) != 3:
            raise NoteError(f"verifier key {vkey!r}: expected <name>+<key id>+<base64 key>", reason="bad-vkey")
        name, hex_id, b64_key = parts
        check_key_name(name)
        try:
            raw = base64.b64decode(b64_key, validate=True)
            stated = int(hex_id, 16) if re.fullmatch(r"[0-9a-fA-F]{8}", hex_id) else None
        except (binascii.Error, ValueError) as exc:
            raise NoteError(f"verifier key of {name!r}: the key is not standard base64", reason="bad-vkey") from exc
        if stated is None:
            raise NoteError(f"verifier key of {name!r}: key id {hex_id!r} is not 8 hex digits", reason="bad-vkey")
        if len(raw) < 2:
            raise NoteError(f"verifier key of {name!r}: the key is too short", reason="bad-vkey")
        sig_type, material = raw[0], raw[1:]
        try:
            if sig_type == ED25519:
                public_key: object = ed25519.Ed25519PublicKey.from_public_bytes(material)
            elif sig_type == ECDSA:
                public_key = serialization.load_der_public_key(material)
            else:
                raise NoteError(
                    f"verifier key of {name!r}: signature type 0x{sig_type:02x} is not supported (0x01 Ed25519, 0x02 ECDSA)",
                    reason="bad-vkey",
                )
        except ValueError as exc:
            raise NoteError(f"verifier key of {name!r}: not a valid public key of type 0x{sig_type:02x}", reason="bad-vkey") from exc
        verifier = cls.from_public_key(name, public_key)
        if verifier.sig_type != sig_type or (sig_type == ECDSA and _spki(public_key) != material):  # type: ignore[arg-type]
            raise NoteError(f"verifier key of {name!r}: key type and key do not agree", reason="bad-vkey")
        if verifier.key_id != stated:
            raise NoteError(
                f"verifier key of {name!r}: key id {hex_id} does not match the key (expected {verifier.key_id:08x})",
                reason="bad-vkey",
            )
        return verifier

    def vkey(self) -> str:
        """This key as a verifier key string, to publish next to the log (and for ``ketqua pull --log-key``)."""
        _, material = _key_material(self.public_key, self.name)
        return f"{self.name}+{self.key_id:08x}+{b64(bytes([self.sig_type]) + material)}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True when ``signature`` (without the key ID) is this key's signature of note ``text``."""
        try:
            if isinstance(self.public_key, ed25519.Ed25519PublicKey):
                self.public_key.verify(signature, text)
            else:
                self.public_key.verify(signature, text, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    """Signs note text under one key name: the lab's ECDSA key (file or token) or an Ed25519 key."""

    __slots__ = ("name", "verifier", "_sign")

    def __init__(self, name: str, key: Signer | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
        if isinstance(key, ed25519.Ed25519PrivateKey):
            public_key: object = key.public_key()
            self._sign = key.sign
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            public_key = key.public_key()
            # RFC 6979 nonces, as ketqua's file-key signer: a re-signed checkpoint is byte-identical.
            ecdsa = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
            self._sign = lambda text: key.sign(text, ecdsa)
        elif isinstance(key, Signer):
            public_key = key.certificate.public_key()
            if key.algorithm != "ES256":
                raise SigningError(f"note key {name!r}: the lab signer is {key.algorithm}; a checkpoint needs an EC key")
            # Signer.sign is DER ECDSA over SHA-256 of the data: exactly signature type 0x02.
            self._sign = key.sign
        else:
            raise SigningError(f"note key {name!r}: cannot sign with a {type(key).__name__}")
        self.name = check_key_name(name)
        self.verifier = NoteVerifier.from_public_key(name, public_key)

    def sign(self, text: bytes) -> bytes:
        """The raw signature of ``text`` (no key ID)."""
        return self._sign(text)

    def vkey(self) -> str:
        return self.verifier.vkey()


# --------------------------------------------------------------------------- signed notes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID, and the signature bytes after the ID."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        return f"{_EM_DASH}{self.name} {b64(self.key_id.to_bytes(4, 'big') + self.signature)}\n"


@dataclass(frozen=True)
class SignedNote:
    """A signed note as parsed: its text (with the final newline) and every signature line, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")


def _check_text(text: str, source: str) -> None:
    if not text.endswith("\n"):
        raise NoteError(f"{source}: the note text must end with a newline")
    if _CONTROL.search(text):
        raise NoteError(f"{source}: the note contains a control character other than newline")


def parse_note(data: bytes | str, *, source: str = "signed note") -> SignedNote:
    """Split a signed note into text and signature lines, strictly (nothing is verified yet).

    Raises :class:`NoteError` naming what is malformed: not UTF-8, control
    characters, no blank line before the signatures, a signature line that is
    not ``— <name> <base64>``, a signature shorter than its key ID.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteError(f"{source}: {len(raw)} bytes, larger than any note ketqua accepts ({MAX_NOTE_BYTES})")
    try:
        note = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError(f"{source}: not valid UTF-8 (byte {exc.start})") from exc
    if _CONTROL.search(note):
        line = note[: _CONTROL.search(note).start()].count("\n") + 1  # type: ignore[union-attr]
        raise NoteError(f"{source}, line {line}: a control character other than newline")
    # The text ends at the *last* blank line: the text may itself contain empty lines.
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError(f"{source}: no blank line separates the text from the signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    if not block:
        raise NoteError(f"{source}: no signature lines after the blank line")
    if not block.endswith("\n"):
        raise NoteError(f"{source}: the last signature line does not end with a newline")
    first_line = text.count("\n") + 2
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"{source}: {len(lines)} signatures, more than the {MAX_SIGNATURES} accepted")
    signatures = []
    for offset, line in enumerate(lines):
        where = f"{source}, line {first_line + offset}"
        if not line.startswith(_EM_DASH):
            raise NoteError(f"{where}: a signature line starts with '— ' (em dash, space), got {line[:20]!r}")
        name, sep, sig64 = line[len(_EM_DASH) :].partition(" ")
        if not sep or " " in sig64:
            raise NoteError(f"{where}: expected '— <key name> <base64 signature>'")
        try:
            check_key_name(name)
        except NoteError as exc:
            raise NoteError(f"{where}: {exc}") from exc
        try:
            sig = base64.b64decode(sig64.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise NoteError(f"{where}: the signature of {name!r} is not standard base64") from exc
        if len(sig) < 5:
            raise NoteError(f"{where}: the signature of {name!r} is {len(sig)} bytes, shorter than key ID + signature")
        signatures.append(NoteSignature(name, int.from_bytes(sig[:4], "big"), sig[4:]))
    return SignedNote(text, tuple(signatures))


def sign_note(text: str, signers: Iterable[NoteSigner]) -> bytes:
    """A signed note of ``text`` (ending in a newline) with one signature line per signer, in order."""
    _check_text(text, "note text")
    body = text.encode("utf-8")
    lines = [NoteSignature(s.name, s.verifier.key_id, s.sign(body)) for s in signers]
    if not lines:
        raise SigningError("a signed note needs at least one signer")
    return SignedNote(text, tuple(lines)).encode()


def open_note(data: bytes | str, verifiers: Sequence[NoteVerifier], *, source: str = "signed note") -> SignedNote:
    """Parse and verify a note: at least one signature of a trusted key verifies, and none of them fails.

    Returns the note with only the verified signatures. Raises :class:`NoteError`
    (malformed) or :class:`NoteSignatureError` (``untrusted-note``: no trusted key
    signed it; ``bad-signature``: a trusted key's signature fails).
    """
    note = parse_note(data, source=source)
    known = {(v.name, v.key_id): v for v in verifiers}
    body = note.text.encode("utf-8")
    verified = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue  # another key (a witness, a rotated key): ignored, as the note rules require
        if not verifier.verify(body, sig.signature):
            raise NoteSignatureError(
                f"{source}: the signature of {sig.name} (key {sig.key_id:08x}) does not verify: the note was altered or forged"
            )
        verified.append(sig)
    if not verified:
        seen = ", ".join(f"{s.name} ({s.key_id:08x})" for s in note.signatures)
        trusted = ", ".join(f"{v.name} ({v.key_id:08x})" for v in verifiers) or "none"
        raise NoteSignatureError(f"{source}: signed by {seen}, none of them a trusted key ({trusted})", reason="untrusted-note")
    return SignedNote(note.text, tuple(verified))


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: which log (``origin``), how many leaves (``size``), and the RFC 6962 root hash."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or _CONTROL.search(self.origin):
            raise NoteError(f"checkpoint origin {self.origin!r} must be one non-empty line", reason="bad-checkpoint")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise NoteError(f"checkpoint size {self.size!r} must be a non-negative integer", reason="bad-checkpoint")
        if len(self.root_hash) != HASH_SIZE:
            raise NoteError(f"checkpoint root hash must be {HASH_SIZE} bytes, got {len(self.root_hash)}", reason="bad-checkpoint")
        for ext in self.extensions:
            if not ext or "\n" in ext or _CONTROL.search(ext):
                raise NoteError(f"checkpoint extension line {ext!r} must be one non-empty line", reason="bad-checkpoint")

    def text(self) -> str:
        """The note text: origin, size, base64 root, extension lines, each ending in a newline."""
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), b64(self.root_hash), *self.extensions))

    @classmethod
    def from_text(cls, text: str, *, source: str = "checkpoint") -> Checkpoint:
        """Parse checkpoint note text strictly (c2sp.org/tlog-checkpoint)."""
        if not text.endswith("\n"):
            raise NoteError(f"{source}: the checkpoint text must end with a newline", reason="bad-checkpoint")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(f"{source}: a checkpoint has at least 3 lines (origin, size, root hash), got {len(lines)}", reason="bad-checkpoint")
        origin, size, root, *extensions = lines
        if not origin:
            raise NoteError(f"{source}, line 1: the origin line is empty", reason="bad-checkpoint")
        if not _DECIMAL.match(size):
            raise NoteError(f"{source}, line 2: tree size {size!r} is not a decimal number without leading zeros", reason="bad-checkpoint")
        try:
            root_hash = base64.b64decode(root.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise NoteError(f"{source}, line 3: root hash {root!r} is not standard base64", reason="bad-checkpoint") from exc
        if len(root_hash) != HASH_SIZE or b64(root_hash) != root:
            raise NoteError(f"{source}, line 3: root hash {root!r} is not the base64 of a 32-byte hash", reason="bad-checkpoint")
        for i, ext in enumerate(extensions, start=4):
            if not ext:
                raise NoteError(f"{source}, line {i}: extension lines must not be empty", reason="bad-checkpoint")
        return cls(origin, int(size), root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> bytes:
    """The checkpoint as a signed note (the key name should be the origin; see :func:`checkpoint_signer`)."""
    return sign_note(checkpoint.text(), [signer])


def checkpoint_signer(origin: str, key: Signer | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> NoteSigner:
    """The log's note signer: key name = origin, as c2sp.org/tlog-checkpoint recommends."""
    return NoteSigner(origin, key)


def open_checkpoint(
    data: bytes | str, verifiers: Sequence[NoteVerifier], *, origin: str | None = None, source: str = "checkpoint"
) -> Checkpoint:
    """Verify a signed checkpoint and parse it; with ``origin``, it must be that log's.

    Raises :class:`NoteError`, :class:`NoteSignatureError`, or a
    :class:`VerificationError` (``wrong-origin``) for another log's checkpoint.
    """
    note = open_note(data, verifiers, source=source)
    checkpoint = Checkpoint.from_text(note.text, source=source)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(
            f"{source}: checkpoint of log {checkpoint.origin!r}, expected log {origin!r}", reason="wrong-origin"
        )
    if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
        raise NoteError(f"{source}: an empty tree's root is {b64(EMPTY_ROOT)}, not {b64(checkpoint.root_hash)}", reason="bad-checkpoint")
    return checkpoint


def _describe(cp: Checkpoint) -> str:
    return f"size {cp.size} (root {b64(cp.root_hash)})"


def verify_extends(trusted: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that ``new`` extends the ``trusted`` checkpoint of the same log: what a puller or witness calls.

    Both checkpoints' signatures must already be verified (:func:`open_checkpoint`);
    ``proof`` is the consistency proof from ``trusted.size`` to ``new.size``.
    Raises :class:`ForkDetected` when they cannot both be true (a smaller tree, a
    different root at the same size, or a failing proof), or a
    :class:`VerificationError` (``wrong-origin``) when they are of two logs.
    """
    if trusted.origin != new.origin:
        raise VerificationError(f"checkpoint of log {new.origin!r} compared with one of {trusted.origin!r}", reason="wrong-origin")
    log = f"log {trusted.origin!r}"
    evidence = "keep both signed checkpoints: together they prove it"
    if new.size < trusted.size:
        raise ForkDetected(f"{log} went backwards: new checkpoint {_describe(new)} is smaller than the trusted {_describe(trusted)}; {evidence}")
    if new.size == trusted.size:
        if new.root_hash != trusted.root_hash or proof:
            raise ForkDetected(f"{log} signed two different trees of {new.size} leaves: {b64(trusted.root_hash)} and {b64(new.root_hash)}; {evidence}")
        return
    if trusted.size == 0:
        if proof:
            raise ProofError(f"{log}: a consistency proof from the empty tree must be empty, got {len(proof)} hashes")
        return
    try:
        verify_consistency(trusted.size, new.size, proof, trusted.root_hash, new.root_hash)
    except ProofError as exc:
        raise ForkDetected(
            f"{log}: the checkpoint {_describe(new)} does not provably extend the trusted {_describe(trusted)} ({exc}). "
            f"The log's history was rewritten, or this server shows you a different one; {evidence}"
        ) from exc


def verify_included(leaf: bytes, proof: InclusionProof, checkpoint: Checkpoint) -> None:
    """Check offline that raw leaf bytes (a result version's JWS compact) are in the log at ``checkpoint``.

    The proof must be for the checkpoint's tree size. Raises :class:`ProofError`.
    """
    if proof.tree_size != checkpoint.size:
        raise ProofError(
            f"the inclusion proof is for a tree of {proof.tree_size} leaves, the checkpoint of {checkpoint.origin!r} has {checkpoint.size}",
            reason="size-mismatch",
        )
    try:
        verify_inclusion(leaf_hash(leaf), proof.leaf_index, proof.tree_size, proof.hashes, checkpoint.root_hash)
    except ProofError as exc:
        raise ProofError(
            f"log {checkpoint.origin!r}: this result is not leaf {proof.leaf_index} of the tree of {checkpoint.size} leaves ({exc})",
            reason=exc.reason,
        ) from exc
