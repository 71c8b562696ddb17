"""JWS and HC1 signing vs raw ECDSA P-256 signing with cryptography.

The baseline is the one operation both must perform per result:
``private_key.sign(canonical_json, ECDSA(SHA256()))`` on the same bytes (RFC 6979
deterministic nonces, as ketqua's file-key signer uses), with
the key already loaded. Everything ketqua adds (header, base64url, r‖s
conversion; for HC1 the CBOR claims, COSE structure, zlib, Base45) shows up as
the ratio. Aim (issue 5): within 2× of the raw signature.
"""

from __future__ import annotations

from datetime import timedelta

from bench import common, workloads
from bench.runner import Context, Figure, compare, module_exists, skipped, stage


@stage(
    "signing",
    "JWS (ES256) and HC1 (COSE/CWT) vs raw ECDSA P-256",
    requires=("signing.keys", "signing.pki", "signing.canonical", "signing.jws", "engine.results.signed", "engine.demo"),
    order=30,
)
def run(ctx: Context) -> list[Figure]:
    from engine.results.signed import expiry, parse_instant
    from signing.canonical import canonical_json
    from signing.jws import sign_compact

    n = int(ctx.scale(1000, 3000))
    k = common.keys(ctx)
    signer, key = k.signer, k.private_key
    payloads = ctx.cached(f"payloads-{n}", lambda: workloads.result_payloads(n, ctx.seed))
    canonical = [canonical_json(p) for p in payloads]
    ecdsa = common.raw_ecdsa()

    def raw() -> None:
        for c in canonical:
            key.sign(c, ecdsa)

    def jws() -> None:
        for c in canonical:
            sign_compact(c, signer)

    def jcs_jws() -> None:
        for p in payloads:
            sign_compact(canonical_json(p), signer)

    figures = [
        compare("JWS compact (ES256)", unit="signatures", amount=n, candidate=jws, baseline=raw, repeats=ctx.repeats,
                candidate_label="signing.jws.sign_compact", baseline_label="cryptography ECDSA P-256 sign (RFC 6979)", aim="≤ 2× raw ECDSA"),
        compare("JCS canonical JSON + JWS", unit="results", amount=n, candidate=jcs_jws, baseline=raw, repeats=ctx.repeats,
                candidate_label="canonical_json + sign_compact", baseline_label="cryptography ECDSA P-256 sign (RFC 6979)"),
    ]
    if not module_exists("signing.hc1") or not module_exists("signing.dcc"):
        missing = "signing.hc1" if not module_exists("signing.hc1") else "signing.dcc"
        figures.append(skipped("HC1 (COSE_Sign1, zlib, Base45)", f"{missing.replace('.', '/')}.py is not written yet", missing_module=missing))
        return figures
    from signing.dcc import test_entry
    from signing.hc1 import sign_hc1

    issued = parse_instant(payloads[0]["issued_at"])
    expires = expiry(payloads[0]["issued_at"], 30)
    dccs = [test_entry(p) for p in payloads]

    def hc1() -> None:
        for d in dccs:
            sign_hc1(d, signer, issued_at=issued, expires_at=expires)

    def result_hc1() -> None:
        for p in payloads:
            sign_hc1(test_entry(p), signer, issued_at=issued, expires_at=expires)

    figures.append(compare("HC1 (CWT, COSE_Sign1, zlib, Base45)", unit="signatures", amount=n, candidate=hc1, baseline=raw,
                           repeats=ctx.repeats, candidate_label="signing.hc1.sign_hc1", baseline_label="cryptography ECDSA P-256 sign (RFC 6979)",
                           aim="≤ 2× raw ECDSA"))
    figures.append(compare("result → DCC test entry + HC1", unit="results", amount=n, candidate=result_hc1, baseline=raw,
                           repeats=ctx.repeats, candidate_label="dcc.test_entry + sign_hc1", baseline_label="cryptography ECDSA P-256 sign (RFC 6979)"))
    return figures
