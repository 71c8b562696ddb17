"""C2SP signed notes and checkpoints: published notes verify, ketqua's own round-trip, tampering and forks are caught.

Published vectors:
* Go's ``golang.org/x/mod/sumdb/note`` package documentation: the PeterNeumann Ed25519
  note, its signing key and verifier key (Ed25519 signatures are deterministic, so
  signing must give the same bytes).
* A signed tree head of the Go checksum database (``sum.golang.org``, Go's built-in
  verifier key), as quoted in transparency-dev/formats ``log/checkpoint_test.go``.
* ECDSA (type 0x02) checkpoints of Sigstore's Rekor log and of the Pixel 6 binary
  transparency log with their verifier keys, from transparency-dev/formats
  ``note/note_verifier_test.go``.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signing.checkpoint import (
    ECDSA,
    ED25519,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    checkpoint_signer,
    key_id,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
    verify_extends,
    verify_included,
)
from signing.errors import ForkDetected, NoteError, NoteSignatureError, ProofError, SigningError, VerificationError
from signing.keys import SignerSpec
from signing.merkle import EMPTY_ROOT, InclusionProof, MemoryHashStore, MerkleLog
from signing.pki import DevelopmentPki

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_NOTE = PETER_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
    "— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n"
)
REKOR_VKEY = ("rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l"
              "+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=")
REKOR_NOTE = ("Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n\n"
              "— rekor.sigstore.dev wNI9ajBEAiARInWIWyCdyG27CO6LPnPekyw20qO0YJfoaPaowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoTURUCRdxwWBHHufk=\n")
PIXEL_VKEY = ("pixel6_transparency_log+91c16e30+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABN+4x0Jk1yTwvLFI9A4NDdGZcX0aiWVdWM5XJVy0M4VWD3Av"
              "yW5Q6Hs9A0mcDkpUoYgn+KKPNzFC0H3nN3q6JQ8=")
PIXEL_NOTE = ("DEFAULT\n10\nbsWRucJU5xJPHb5eBdOm6+DM+VelCZBuvtI3sHERJ9Y=\n\n"
              "— pixel6_transparency_log kcFuMDBFAiEAhqMAP8P6qf6QxtUJhzMhbN+MbZ9dwfUHzGQJmffJHtoCIGD0cNe47dHWBoPwYdgBCepB06/+g5O1FmYjXl06owL4\n")

ORIGIN = "ketqua.example.vn/lab-hcm-01/log"


def _peter_signer() -> NoteSigner:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert seed[0] == ED25519
    return NoteSigner("PeterNeumann", ed25519.Ed25519PrivateKey.from_private_bytes(seed[1:]))


@pytest.fixture(scope="module")
def lab_signer(dev_keys):  # -> signing.signer.Signer
    """The development PKI's ECDSA P-256 signer, opened as the lab opens its key file."""
    pki = DevelopmentPki(dev_keys)
    return SignerSpec(kind="file", key=str(pki.signer_key), certificate=str(pki.signer_cert)).open()


# --------------------------------------------------------------------------- published notes


def test_go_sumdb_note_example_signs_and_opens() -> None:
    """Go's sumdb/note example: the same key gives the published verifier key and byte-identical note."""
    signer = _peter_signer()
    assert signer.vkey() == PETER_VKEY
    assert sign_note(PETER_TEXT, [signer]).decode("utf-8") == PETER_NOTE
    verifier = NoteVerifier.from_vkey(PETER_VKEY)
    assert open_note(PETER_NOTE, [verifier]).text == PETER_TEXT
    with pytest.raises(NoteSignatureError) as caught:
        open_note(PETER_NOTE.replace("cryptography", "cryptographY"), [verifier])
    assert caught.value.reason == "bad-signature"


def test_go_checksum_database_checkpoint_verifies() -> None:
    """A signed tree head published by sum.golang.org parses as a checkpoint and verifies under Go's key."""
    cp = open_checkpoint(SUMDB_NOTE, [NoteVerifier.from_vkey(SUMDB_VKEY)], origin="go.sum database tree")
    assert (cp.size, base64.b64encode(cp.root_hash).decode()) == (6476701, "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=")
    with pytest.raises(NoteSignatureError):
        open_checkpoint(SUMDB_NOTE.replace("6476701", "6476702"), [NoteVerifier.from_vkey(SUMDB_VKEY)])


@pytest.mark.parametrize(("vkey", "note", "size"), [(REKOR_VKEY, REKOR_NOTE, 798034), (PIXEL_VKEY, PIXEL_NOTE, 10)])
def test_published_ecdsa_checkpoints_verify(vkey: str, note: str, size: int) -> None:
    """Rekor's and Pixel's ECDSA checkpoints verify: our type 0x02 key ID (SHA-256 of SPKI) and DER signature match theirs."""
    verifier = NoteVerifier.from_vkey(vkey)
    assert verifier.sig_type == ECDSA and verifier.vkey() == vkey
    assert open_checkpoint(note, [verifier]).size == size
    with pytest.raises(NoteSignatureError):
        open_checkpoint(note.replace(f"\n{size}\n", f"\n{size + 1}\n"), [verifier])


def test_bad_verifier_keys_are_refused() -> None:
    """A verifier key whose ID does not match its key, with a bad type or bad base64, is a NoteError."""
    name, _, material = REKOR_VKEY.split("+", 2)
    for bad in (f"{name}+00000000+{material}", f"{name}+c0d23d6a+AwEB", f"{name}+c0d23d6a+!!!", f"{name}+zz+{material}", "a+b"):
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(bad)


# --------------------------------------------------------------------------- the lab's own checkpoints


def test_lab_signer_signs_checkpoints_with_ecdsa_type_0x02(lab_signer) -> None:
    """The lab's P-256 signer (the Signer protocol) signs a checkpoint that its certificate's key verifies."""
    log = MerkleLog(MemoryHashStore())
    log.append([b"eyJhbGciOiJFUzI1NiJ9.e30.sig-%d" % i for i in range(10)])
    cp = Checkpoint(ORIGIN, log.size, log.root())
    signer = checkpoint_signer(ORIGIN, lab_signer)
    note = sign_checkpoint(cp, signer)
    verifier = NoteVerifier.from_public_key(ORIGIN, lab_signer.certificate.public_key())
    assert verifier.sig_type == ECDSA and verifier == signer.verifier
    assert verifier.key_id == key_id(ORIGIN, ECDSA, base64.b64decode(verifier.vkey().split("+", 2)[2])[1:])
    assert open_checkpoint(note, [verifier], origin=ORIGIN) == cp
    assert open_checkpoint(note, [NoteVerifier.from_vkey(signer.vkey())]) == cp
    assert note.decode().splitlines()[:3] == [ORIGIN, "10", base64.b64encode(log.root()).decode()]


def test_wrong_key_or_wrong_origin_fails(lab_signer) -> None:
    """A note signed by another key is untrusted; a checkpoint of another log is refused for this one."""
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    note = sign_checkpoint(cp, checkpoint_signer(ORIGIN, ec.generate_private_key(ec.SECP256R1())))
    lab = NoteVerifier.from_public_key(ORIGIN, lab_signer.certificate.public_key())
    with pytest.raises(NoteSignatureError) as caught:
        open_checkpoint(note, [lab])
    assert caught.value.reason == "untrusted-note"
    good = sign_checkpoint(cp, checkpoint_signer(ORIGIN, lab_signer))
    with pytest.raises(VerificationError) as caught:
        open_checkpoint(good, [lab], origin="another.example/log")
    assert caught.value.reason == "wrong-origin"


def test_unknown_signatures_are_ignored_and_a_bad_known_one_rejects() -> None:
    """A witness's extra signature is ignored; a known key's failing signature rejects the whole note."""
    log_key, witness = ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    note = sign_note(cp.text(), [checkpoint_signer(ORIGIN, log_key), NoteSigner("witness.example/w1", witness)])
    verifier = NoteVerifier.from_public_key(ORIGIN, log_key.public_key())
    assert [s.name for s in open_note(note, [verifier]).signatures] == [ORIGIN]
    # Same name and key ID, forged signature bytes.
    parsed = parse_note(note)
    forged = parsed.signatures[0].line().split(" ")
    sig = base64.b64decode(forged[2])
    forged_line = f"{forged[0]} {forged[1]} {base64.b64encode(sig[:4] + bytes(64)).decode()}\n"
    with pytest.raises(NoteSignatureError) as caught:
        open_note(parsed.text + "\n" + forged_line + parsed.signatures[1].line(), [verifier])
    assert caught.value.reason == "bad-signature"


def test_rsa_and_other_keys_cannot_sign_a_checkpoint() -> None:
    """Signed notes assign no RSA type: an RSA key is refused with a SigningError, not a silent 0xff."""
    with pytest.raises(SigningError):
        NoteSigner(ORIGIN, rsa.generate_private_key(public_exponent=65537, key_size=2048))  # type: ignore[arg-type]
    with pytest.raises(SigningError):
        NoteSigner(ORIGIN, ec.generate_private_key(ec.SECP256K1()))


# --------------------------------------------------------------------------- properties

#: Origins that are also valid key names (no spaces, no '+'), Vietnamese letters included.
origins = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="+").filter(lambda c: not c.isspace()),
                  min_size=1, max_size=40)
extension = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30)
checkpoints = st.builds(Checkpoint, origins, st.integers(1, 2**63 - 1), st.binary(min_size=32, max_size=32),
                        st.lists(extension, max_size=3).map(tuple))
ED_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
EC_KEY = ec.derive_private_key(123456789, ec.SECP256R1())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cp=checkpoints, use_ec=st.booleans(), data=st.data())
def test_checkpoint_round_trip_and_any_tampering_fails(cp: Checkpoint, use_ec: bool, data: st.DataObject) -> None:
    """Any checkpoint signs and opens to itself; changing any byte of its text breaks it; another key is untrusted."""
    key = EC_KEY if use_ec else ED_KEY
    signer = checkpoint_signer(cp.origin, key)
    note = sign_checkpoint(cp, signer)
    assert Checkpoint.from_text(cp.text()) == cp
    assert open_checkpoint(note, [signer.verifier], origin=cp.origin) == cp
    text = cp.text().encode()
    i = data.draw(st.integers(0, len(text) - 2), label="byte")
    replacement = data.draw(st.sampled_from(b"0Aa/=x"), label="replacement")
    if text[i] == replacement or text[i] >= 0x80:
        return
    tampered = text[:i] + bytes([replacement]) + text[i + 1 :]
    with pytest.raises(VerificationError):
        open_checkpoint(tampered + note[len(text) :], [signer.verifier])
    other = NoteVerifier.from_public_key(cp.origin, (ED_KEY if use_ec else EC_KEY).public_key())
    with pytest.raises(NoteSignatureError):
        open_checkpoint(note, [other])


@pytest.mark.parametrize(("note", "needle"), [
    (b"origin\n1\n" + b"A" * 43 + b"=\n", "no blank line"),
    (b"origin\n1\nx\n\n", "no signature lines"),
    (b"origin\n1\nx\n\n\xe2\x80\x94 name AAAAAAA=", "does not end with a newline"),
    (b"origin\n1\nx\n\n- name AAAAAAA=\n", "em dash"),
    (b"origin\n1\nx\n\n\xe2\x80\x94 na+me AAAAAAA=\n", "key name 'na.me'"),
    (b"origin\n1\nx\n\n\xe2\x80\x94 name AAA\n", "base64"),
    (b"origin\n1\nx\n\n\xe2\x80\x94 name AAAA\n", "shorter than key ID"),
    (b"origin\n1\nx\n\n\xe2\x80\x94 name two words\n", "expected"),
    (b"ori\tgin\n1\nx\n\n\xe2\x80\x94 name AAAAAAA=\n", "line 1: a control character"),
    (b"origin\n1\n\xff\n\n\xe2\x80\x94 name AAAAAAA=\n", "UTF-8"),
])
def test_malformed_notes_are_refused_with_the_reason(note: bytes, needle: str) -> None:
    """Each malformation of the signed-note format is a NoteError saying which."""
    with pytest.raises(NoteError, match=needle):
        parse_note(note)


@pytest.mark.parametrize(("text", "needle"), [
    ("origin\n1\n", "at least 3 lines"),
    ("origin\n01\n" + "A" * 43 + "=\n", "leading zeros"),
    ("origin\n-1\n" + "A" * 43 + "=\n", "decimal"),
    ("origin\n1\nAAAA\n", "32-byte"),
    ("origin\n1\n" + "A" * 43 + "\n", "base64"),
    ("origin\n1\n" + "A" * 43 + "=\n\next\n", "extension"),
    ("\n1\n" + "A" * 43 + "=\n", "origin"),
    ("origin\n1\n" + "A" * 43 + "=", "newline"),
])
def test_malformed_checkpoint_text_is_refused(text: str, needle: str) -> None:
    """Each deviation from the tlog-checkpoint body is a NoteError (reason bad-checkpoint) naming the line."""
    with pytest.raises(NoteError, match=needle) as caught:
        Checkpoint.from_text(text)
    assert caught.value.reason == "bad-checkpoint"


# --------------------------------------------------------------------------- what a puller checks


def _signed(log: MerkleLog, signer: NoteSigner, verifier: NoteVerifier) -> Checkpoint:
    return open_checkpoint(sign_checkpoint(Checkpoint(ORIGIN, log.size, log.root()), signer), [verifier], origin=ORIGIN)


def test_puller_accepts_growth_and_detects_a_rewritten_result() -> None:
    """A grown log verifies against the trusted checkpoint; a lab that rewrote an old result is a ForkDetected."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
    signer = checkpoint_signer(ORIGIN, key)
    verifier = signer.verifier
    results = [b"header.payload-%d.signature" % i for i in range(40)]
    honest = MerkleLog(MemoryHashStore())
    honest.append(results[:25])
    trusted = _signed(honest, signer, verifier)
    verify_extends(Checkpoint(ORIGIN, 0, EMPTY_ROOT), trusted, [])
    honest.append(results[25:])
    grown = _signed(honest, signer, verifier)
    verify_extends(trusted, grown, honest.consistency_proof(25))
    # The lab rewrites result 7 in its database and rebuilds the log from it.
    rewritten = list(results)
    rewritten[7] = b"header.payload-7-CORRECTED.signature"
    forked = MerkleLog(MemoryHashStore())
    forked.append(rewritten)
    forged = _signed(forked, signer, verifier)
    with pytest.raises(ForkDetected, match="size 40") as caught:
        verify_extends(trusted, forged, forked.consistency_proof(25))
    assert caught.value.reason == "fork" and "keep both signed checkpoints" in str(caught.value)
    with pytest.raises(ForkDetected):  # nor does the honest proof make the forged head consistent
        verify_extends(trusted, forged, honest.consistency_proof(25))


def test_puller_detects_rollback_and_two_heads_of_one_size() -> None:
    """A smaller tree, or a different root at the same size, is a fork; another log's checkpoint is refused."""
    a = Checkpoint(ORIGIN, 10, b"\x01" * 32)
    with pytest.raises(ForkDetected, match="backwards"):
        verify_extends(a, Checkpoint(ORIGIN, 9, b"\x01" * 32), [])
    with pytest.raises(ForkDetected, match="two different trees"):
        verify_extends(a, Checkpoint(ORIGIN, 10, b"\x02" * 32), [])
    verify_extends(a, a, [])
    with pytest.raises(VerificationError) as caught:
        verify_extends(a, Checkpoint("other.example/log", 11, b"\x01" * 32), [])
    assert caught.value.reason == "wrong-origin" and not isinstance(caught.value, ForkDetected)
    with pytest.raises(ProofError):
        verify_extends(Checkpoint(ORIGIN, 0, EMPTY_ROOT), a, [b"\x00" * 32])


def test_offline_inclusion_of_a_result_in_a_checkpoint() -> None:
    """``ketqua verify``'s check: a result's JWS bytes, its proof and a checkpoint; a changed result fails."""
    results = [b"eyJhbGciOiJFUzI1NiJ9.result-%d.sig" % i for i in range(13)]
    log = MerkleLog(MemoryHashStore())
    log.append(results)
    cp = Checkpoint(ORIGIN, log.size, log.root())
    proof = InclusionProof(6, 13, tuple(log.inclusion_proof(6)))
    verify_included(results[6], InclusionProof.from_json(proof.to_json()), cp)
    with pytest.raises(ProofError, match="not leaf 6"):
        verify_included(results[6] + b"x", proof, cp)
    with pytest.raises(ProofError) as caught:
        verify_included(results[6], InclusionProof(6, 12, tuple(log.inclusion_proof(6, 12))), cp)
    assert caught.value.reason == "size-mismatch"
