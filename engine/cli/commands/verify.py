"""``ketqua verify [--trust FILE]… [--at ISO8601] INPUT``: check a signed result offline.

INPUT is an ``HC1:`` string, a JWS (compact, or a ``results show --json``
object with ``jws`` and ``payload``), a PDF (PAdES signatures, plus the QR on
page 1), or an image holding the QR; a file path, ``-`` for standard input, or
the text itself. Trust (``--trust``): PEM/DER certificates (a CA, or the signer
certificate itself), or the lab's JWK Set as published at ``/v1/keys`` (each
key's x5c certificate is trusted as published). Exit status: 0 valid,
1 invalid (the reason is printed), 2 the input or trust roots cannot be used.

With ``--proof FILE --checkpoint FILE`` (a JWS or JSON result only), it also
checks offline that the result is in the lab's transparency log: the
checkpoint (``GET /v1/log/checkpoint``) must be signed by a key given in
``--trust``/``--cert`` (the lab's signer certificate or its ``/v1/keys`` JWKS;
``<data>/keys/signer.pem`` by default) and the inclusion proof
(``GET /v1/results/{id}/proof?tree_size=N``) must lead from the JWS to its root.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signing.trust import TrustSet

EXIT_VALID, EXIT_INVALID, EXIT_UNUSABLE = 0, 1, 2

_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
_QR_CONTEXT = re.compile(r"^[A-Z][A-Z0-9]{1,3}:")


def _instant(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-29T15:04:05Z)") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "verify",
        parents=[common],
        help="verify a signed result (HC1 string, JWS, PDF, or QR image) against trust roots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="file path, '-' for stdin, or the HC1:/JWS text itself")
    p.add_argument("--trust", action="append", default=[], metavar="FILE",
                   help="trust: PEM/DER certificate(s) (a CA, or the signer certificate itself), or a JWKS JSON "
                        "file as published at /v1/keys (its keys trusted as published); default <data>/keys/ca.pem")
    p.add_argument("--cert", action="append", default=[], metavar="PEM",
                   help="candidate signer certificates for HC1 (a DSC list); they must chain to --trust. "
                        "<data>/keys/signer.pem is added when present")
    p.add_argument("--at", type=_instant, metavar="ISO8601",
                   help="verification time (default now): HC1 expiry and certificate validity are checked then")
    p.add_argument("--payload", metavar="FILE", help="payload file of a detached JWS (header..signature)")
    p.add_argument("--json", action="store_true", help="print one JSON object per checked signature")
    p.add_argument("--proof", metavar="FILE",
                   help="inclusion proof JSON of the result (GET /v1/results/{id}/proof); needs --checkpoint")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="signed checkpoint of the lab's transparency log (GET /v1/log/checkpoint) the proof is for")
    p.set_defaults(func=run)


def _unusable(message: str) -> int:
    print(f"ketqua verify: {message}", file=sys.stderr)
    return EXIT_UNUSABLE


def run(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir
    from engine.errors import VerificationError
    from signing.trust import as_certificates, load_trust

    data = DataDir.at(args.data)
    trust_paths = list(args.trust)
    if not trust_paths and (data.keys / "ca.pem").exists():
        trust_paths = [str(data.keys / "ca.pem")]
    if not trust_paths:
        return _unusable(
            f"no trust roots: there is no {data.keys / 'ca.pem'}. Pass --data DIR, the lab's data folder "
            "(its keys/ca.pem is trusted), or --trust FILE: the lab's CA certificate (PEM or DER) or the "
            "JWKS it publishes at /v1/keys"
        )
    cert_paths = list(args.cert)
    if (data.keys / "signer.pem").exists():
        cert_paths.append(str(data.keys / "signer.pem"))
    try:
        trust = load_trust(trust_paths)
        candidates = as_certificates(cert_paths)
    except (VerificationError, OSError) as exc:
        return _unusable(f"cannot load the trust roots or certificates: {exc}")

    try:
        raw, label = _read_input(args.input)
    except OSError as exc:
        return _unusable(f"{args.input}: cannot be read ({exc.strerror})")
    detached: bytes | None = None
    if args.payload:
        try:
            detached = Path(args.payload).read_bytes()
        except OSError as exc:
            return _unusable(f"{args.payload}: cannot be read ({exc.strerror})")

    try:
        checks = _plan(raw, label, detached)
    except _Unusable as exc:
        return _unusable(str(exc))
    log_check: tuple[Any, bytes] | None = None
    if args.proof or args.checkpoint:
        if not (args.proof and args.checkpoint):
            return _unusable("--proof and --checkpoint go together: the proof is checked against the checkpoint's root")
        jws = [item for kind, item, _ in checks if kind == "jws"]
        if not jws:
            return _unusable(f"{label}: --proof needs a JWS or a JSON result (the log's leaf is the result's JWS)")
        try:
            log_check = (_read_json(args.proof), Path(args.checkpoint).read_bytes())
        except OSError as exc:
            return _unusable(f"{exc.filename}: cannot be read ({exc.strerror})")
        except _Unusable as exc:
            return _unusable(str(exc))

    status = EXIT_VALID
    for kind, item, extra in checks:
        try:
            reports = _check(kind, item, extra, trust, candidates, args.at)
        except Exception as exc:  # pyHanko raises its own types for an untrusted root: one line, never a traceback
            if not isinstance(exc, VerificationError):
                exc = VerificationError(
                    f"cannot validate against the given trust roots ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'});"
                    " pass --trust with the lab's CA certificate (and the TSA's CA for a time-stamped PDF)",
                    reason="untrusted-chain",
                )
            status = EXIT_INVALID
            if args.json:
                print(json.dumps({"kind": kind, "valid": False, "reason": exc.reason, "message": str(exc)}, ensure_ascii=False))
            else:
                print(f"INVALID {kind.upper()} ({exc.reason}): {exc}")
            continue
        for report in reports:
            if report.kind == "pdf" and report.certificate is not None:
                # The QR on a certificate is signed by the same key as the PDF; that signer,
                # already validated against --trust, is a candidate DSC for the HC1 check.
                candidates.append(report.certificate)
            if args.json:
                print(json.dumps(report.to_dict(), ensure_ascii=False))
            else:
                from signing.verify import describe

                print("\n".join(describe(report)))
    if log_check is not None:
        jws = next(item for kind, item, _ in checks if kind == "jws")
        log_index = _log_index(raw)
        if _check_log(jws, log_index, *log_check, trust, candidates, json_out=args.json) != EXIT_VALID:
            status = EXIT_INVALID
    return status


def _read_json(path: str) -> Any:
    text = Path(path).read_bytes()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _Unusable(f"{path}: not valid JSON ({exc})") from exc


def _log_index(raw: bytes) -> int | None:
    """The ``log_index`` a JSON result (feed item) carries, if any."""
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return None
    index = obj.get("log_index") if isinstance(obj, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _check_log(jws: str, log_index: int | None, proof_obj: Any, note: bytes, trust: "TrustSet", candidates: list,
               *, json_out: bool) -> int:
    """Check offline that ``jws`` is a leaf of the log at the signed checkpoint; print the outcome."""
    from engine.errors import SigningError, VerificationError
    from signing.checkpoint import NoteVerifier, open_checkpoint, verify_included
    from signing.jwk import jwk_public_key
    from signing.merkle import InclusionProof, b64

    try:
        proof = InclusionProof.from_json(proof_obj, source="--proof")
        origin = note.decode("utf-8", "replace").split("\n", 1)[0]
        keys = [c.public_key() for c in [*trust.roots, *candidates]] + [k for k in map(jwk_public_key, trust.bare_keys) if k is not None]
        verifiers = []
        for key in keys:
            try:
                verifiers.append(NoteVerifier.from_public_key(origin, key))
            except (VerificationError, SigningError):
                continue  # an RSA key cannot sign notes
        if not verifiers:
            raise VerificationError("no key given by --trust/--cert can verify a checkpoint", reason="unknown-key")
        checkpoint = open_checkpoint(note, verifiers, source="--checkpoint")
        if log_index is not None and log_index != proof.leaf_index:
            raise VerificationError(
                f"the result says it is leaf {log_index}, the proof is for leaf {proof.leaf_index}", reason="size-mismatch"
            )
        verify_included(jws.encode("utf-8"), proof, checkpoint)
    except VerificationError as exc:
        if json_out:
            print(json.dumps({"kind": "log", "valid": False, "reason": exc.reason, "message": str(exc)}, ensure_ascii=False))
        else:
            print(f"NOT IN THE LOG ({exc.reason}): {exc}")
        return EXIT_INVALID
    if json_out:
        print(json.dumps({"kind": "log", "valid": True, "origin": checkpoint.origin, "leaf_index": proof.leaf_index,
                          "tree_size": checkpoint.size, "root": b64(checkpoint.root_hash)}))
    else:
        print(f"IN THE LOG {checkpoint.origin}: leaf {proof.leaf_index} of the signed tree of {checkpoint.size} "
              f"(root {b64(checkpoint.root_hash)})")
    return EXIT_VALID


class _Unusable(Exception):
    """The input is not something ketqua can verify."""


def _read_input(text: str) -> tuple[bytes, str]:
    if text == "-":
        return sys.stdin.buffer.read(), "standard input"
    path = Path(text)
    try:
        is_file = len(text) < 4096 and path.is_file()
    except OSError:  # a JWS or HC1 string is longer than a file name may be
        is_file = False
    if is_file:
        return path.read_bytes(), str(path)
    return text.encode("utf-8"), "argument"


def _plan(raw: bytes, label: str, detached: bytes | None) -> list[tuple[str, Any, Any]]:
    """What to verify in this input: a list of (kind, item, extra)."""
    from engine.errors import VerificationError
    from signing.verify import qr_texts_from_file

    if raw.startswith(b"%PDF-"):
        plan: list[tuple[str, Any, Any]] = [("pdf", raw, None)]
        try:
            texts = qr_texts_from_file(raw, is_pdf=True)
        except Exception as exc:  # pdfium raises its own error types for broken files
            raise _Unusable(f"{label}: page 1 cannot be rendered to look for the QR ({exc})") from exc
        plan.extend(("hc1", t, None) for t in texts if _QR_CONTEXT.match(t))
        return plan
    if raw.startswith(_IMAGE_MAGIC):
        try:
            texts = qr_texts_from_file(raw, is_pdf=False)
        except VerificationError as exc:
            raise _Unusable(f"{label}: {exc}") from exc
        texts = [t for t in texts if _QR_CONTEXT.match(t)]
        if not texts:
            raise _Unusable(f"{label}: no health-certificate QR code found in the image")
        return [("hc1", t, None) for t in texts]
    try:
        text = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise _Unusable(f"{label}: neither a PDF, an image, nor UTF-8 text") from exc
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise _Unusable(f"{label}: not valid JSON ({exc})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("jws"), str):
            raise _Unusable(f"{label}: JSON without a 'jws' member (expected a 'ketqua results show --json' object)")
        payload = obj.get("payload")
        expected: bytes | None
        if isinstance(payload, str):
            expected = payload.encode("utf-8")
        elif isinstance(payload, dict):
            from signing.canonical import canonical_json

            expected = canonical_json(payload)
        else:
            expected = detached
        plan = [("jws", obj["jws"], expected)]
        if isinstance(obj.get("hc1"), str):
            plan.append(("hc1", obj["hc1"], None))
        return plan
    if _QR_CONTEXT.match(text):
        return [("hc1", text, None)]
    if text.count(".") == 2 and " " not in text:
        return [("jws", text, detached)]
    shown = label if label != "argument" else repr(text[:40])
    raise _Unusable(f"{shown}: not an HC1 string, a JWS, a JSON result, a PDF or an image (or no such file)")


def _check(kind: str, item: Any, extra: Any, trust: "TrustSet", candidates: list, at: dt.datetime | None) -> list:
    from signing.jws import decode_header
    from signing.verify import verify_hc1, verify_jws, verify_pdf

    if kind == "pdf":
        return [verify_pdf(item, trust.roots, at=at)]
    if kind == "hc1":
        return [verify_hc1(item, trust.roots, certificates=candidates, at=at)]
    # A published key without a certificate can only check the signature itself.
    bare = trust.jwks_for(decode_header(item).get("kid")) if trust.bare_keys else None
    return [verify_jws(item, bare if bare is not None else trust.roots, payload=extra, at=at)]
