"""Tests of the pull API (engine.api) against a real server on a loopback port; fixtures in conftest.py."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api.cursor import decode_cursor, encode_cursor
from engine.api.settings import ApiSettings, server_ssl_context
from engine.api.tokens import revoke_token, token_id
from engine.errors import ApiError
from engine.ledger.sqlite import Ledger
from tests.engine.api.api_world import (
    ServerThread,
    World,
    commit,
    feed_pages,
    make_world,
    signed_plate,
    superseding_plate,
    token,
)

NDJSON = "application/x-ndjson"


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """The ketqua log lines captured, each as its event and key=value fields (as the text log prints them)."""
    return "\n".join(
        " ".join([r.getMessage(), *(f"{k}={v}" for k, v in getattr(r, "fields", {}).items())])
        for r in caplog.records
        if r.name.startswith("ketqua")
    )


def test_feed_pages_cover_every_result_once_in_order(server: ServerThread, results_token: str) -> None:
    """Following `next` with small JSON pages yields seq 1..N exactly once, in order, then more=false."""
    items = feed_pages(server, results_token, 7)
    assert [i["seq"] for i in items] == list(range(1, 121))
    assert len({(i["id"], i["version"]) for i in items}) == 120


def test_ndjson_feed_equals_json_feed(server: ServerThread, results_token: str) -> None:
    """The NDJSON representation carries the same items as JSON, with the cursor in X-Next-Cursor."""
    assert feed_pages(server, results_token, 33, accept=NDJSON) == feed_pages(server, results_token, 50)


def test_item_payload_is_the_signed_canonical_json(server: ServerThread, results_token: str, world: World) -> None:
    """Each item's payload is byte-identical to the JWS payload, which verifies against /v1/keys."""
    from signing.jws import verify_compact

    status, _, body = server.request("/v1/results?limit=5", results_token)
    status_k, _, jwks = server.request("/v1/keys", results_token)
    assert status == status_k == 200
    raw_items = body.decode("utf-8")
    for item in json.loads(body)["items"]:
        signed = verify_compact(item["jws"], json.loads(jwks))
        assert signed.decode("utf-8") in raw_items  # verbatim, not re-serialised
        assert json.loads(signed) == item["payload"]
        assert item["hc1"].startswith("HC1:")
        assert item["links"]["self"] == f"/v1/results/{item['id']}?version={item['version']}"


def test_jwks_x5c_chains_to_the_lab_ca(server: ServerThread, results_token: str, world: World) -> None:
    """The published key's x5c certificate is issued by the lab's CA in keys/ca.pem."""
    _, _, body = server.request("/v1/keys", results_token)
    key = json.loads(body)["keys"][0]
    leaf = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    ca = x509.load_pem_x509_certificate((world.data.keys / "ca.pem").read_bytes())
    leaf.verify_directly_issued_by(ca)


@pytest.mark.parametrize(
    "after",
    [
        "garbage",
        "!!!!",
        "A" * 65,
        "AQAAAAAAAAAKoiTNWI4UBD865A",  # well-formed but signed by another server's key
        base64.urlsafe_b64encode(b"\x02" + bytes(18)).decode().rstrip("="),  # unknown format version
        "%00",
    ],
)
def test_malformed_or_foreign_cursor_is_400(server: ServerThread, results_token: str, after: str) -> None:
    """A cursor the server did not issue is a 400 problem with a readable detail, never a 500 or a restart from 0."""
    status, headers, body = server.request(f"/v1/results?after={after}", results_token)
    assert status == 400
    assert headers["content-type"].startswith("application/problem+json")
    assert "cursor" in json.loads(body)["detail"]


def test_tampered_cursor_is_refused(server: ServerThread, results_token: str) -> None:
    """Changing the seq inside a valid cursor breaks its HMAC."""
    _, _, body = server.request("/v1/results?limit=3", results_token)
    raw = bytearray(base64.urlsafe_b64decode(json.loads(body)["next"] + "=="))
    raw[8] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert server.request(f"/v1/results?after={forged}", results_token)[0] == 400


def test_cursor_roundtrip_and_key_binding() -> None:
    """A cursor decodes to its seq under its key and is refused under another key."""
    key, other = b"k" * 32, b"o" * 32
    for seq in (0, 1, 2**40, 2**63 - 1):
        assert decode_cursor(encode_cursor(seq, key), key) == seq
    with pytest.raises(ApiError):
        decode_cursor(encode_cursor(5, key), other)
    for spelling in (encode_cursor(5, key) + "==", " " + encode_cursor(5, key), encode_cursor(5, key)[:-1] + "+"):
        with pytest.raises(ApiError):  # one spelling only: no padding, no stray characters
            decode_cursor(spelling, key)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))))
def test_decode_cursor_accepts_only_its_own_cursors(text: str) -> None:
    """Any text is either refused with CursorError (an ApiError) or is exactly the encoding of the seq it decodes to."""
    key = b"k" * 32
    try:
        seq = decode_cursor(text, key)
    except ApiError:
        return
    assert encode_cursor(seq, key) == text


@pytest.mark.parametrize("limit,status", [("0", 400), ("-3", 400), ("abc", 400), ("1e3", 400), ("10", 200)])
def test_limit_validation(server: ServerThread, results_token: str, limit: str, status: int) -> None:
    """limit must be a positive whole number."""
    assert server.request(f"/v1/results?limit={limit}", results_token)[0] == status


def test_huge_limit_is_capped(server: ServerThread, results_token: str, world: World) -> None:
    """A huge limit is capped (1000 for JSON), not an error and not unbounded memory."""
    s = ServerThread(world, ApiSettings(max_limit=25, rate_per_s=1e4, burst=10_000)).start()
    try:
        status, _, body = s.request(f"/v1/results?limit={10**30}", results_token)
    finally:
        s.stop()
    assert status == 200 and len(json.loads(body)["items"]) == 25


def test_single_result_latest_and_versions(tmp_path: Path) -> None:
    """GET /v1/results/{id} gives the latest version; ?version= the older one, marked superseded; both stay in the feed."""
    w = make_world(tmp_path)
    commit(w, signed_plate(w, 1, 4))
    tok = token(w)
    s = ServerThread(w).start()
    try:
        first = json.loads(s.request("/v1/results?limit=4", tok)[2])["items"]
        commit(w, superseding_plate(w, 2, first[:2]))
        rid = first[0]["id"]
        status, _, body = s.request(f"/v1/results/{rid}", tok)
        latest = json.loads(body)
        assert status == 200 and latest["version"] == 2 and latest["supersedes"] == {"id": rid, "version": 1}
        old = json.loads(s.request(f"/v1/results/{rid}?version=1", tok)[2])
        assert old["version"] == 1 and old["superseded_by"] == 2
        assert s.request(f"/v1/results/{rid}?version=3", tok)[0] == 404
        assert s.request(f"/v1/results/{rid}?version=zero", tok)[0] == 400
        assert s.request("/v1/results/kqdoesnotexist", tok)[0] == 404
        feed = feed_pages(s, tok, 100)
        assert [(i["id"], i["version"]) for i in feed][-2:] == [(first[0]["id"], 2), (first[1]["id"], 2)]
        assert len(feed) == 6
    finally:
        s.stop()


def test_certificate_pdf_is_served_from_the_data_folder_only(tmp_path: Path) -> None:
    """The certificate PDF recorded in the ledger is served as application/pdf; a path outside the data folder is not."""
    from reportlab.pdfgen import canvas

    w = make_world(tmp_path / "data")
    commit(w, signed_plate(w, 1, 2))
    rows = Ledger.open(w.ledger_path).feed_page(0, 2)
    pdf_path = w.data.certificates / f"{rows[0]['id']}-v1.pdf"
    c = canvas.Canvas(str(pdf_path))
    c.drawString(72, 720, "KET QUA XET NGHIEM (DEVELOPMENT)")
    c.save()
    outside = tmp_path / "elsewhere.pdf"
    outside.write_bytes(pdf_path.read_bytes())
    with Ledger.open(w.ledger_path) as ledger:
        ledger.set_certificates([(rows[0]["id"], 1, str(pdf_path)), (rows[1]["id"], 1, str(outside))])
    tok = token(w)
    s = ServerThread(w).start()
    try:
        status, headers, body = s.request(f"/v1/results/{rows[0]['id']}/certificate.pdf", tok)
        assert status == 200 and headers["content-type"] == "application/pdf" and body == pdf_path.read_bytes()
        assert s.request(f"/v1/results/{rows[1]['id']}/certificate.pdf", tok)[0] == 404
        item = json.loads(s.request(f"/v1/results/{rows[0]['id']}", tok)[2])
        assert item["links"]["certificate"] == f"/v1/results/{rows[0]['id']}/certificate.pdf?version=1"
    finally:
        s.stop()


def test_fhir_bundle_endpoint(server: ServerThread, results_token: str) -> None:
    """/fhir answers a FHIR Bundle."""
    item = json.loads(server.request("/v1/results?limit=1", results_token)[2])["items"][0]
    status, headers, body = server.request(f"/v1/results/{item['id']}/fhir", results_token)
    assert status == 200 and headers["content-type"].startswith("application/fhir+json")
    assert json.loads(body)["resourceType"] == "Bundle"


@pytest.mark.parametrize(
    "path",
    ["/v1/results", "/v1/results/x", "/v1/results/x/fhir", "/v1/results/x/certificate.pdf", "/v1/keys",
     "/v1/metrics", "/v1/openapi.json", "/v1/$export", "/v1/exports/" + "0" * 32],
)
def test_every_endpoint_but_health_needs_a_valid_token(server: ServerThread, path: str) -> None:
    """Without a token, with a malformed one, or with a well-formed unknown one: 401 and no data."""
    for auth in (None, "nonsense", "kq_0123456789abcdef_" + "A" * 43):
        status, headers, body = server.request(path, auth)
        assert status == 401, (path, auth)
        assert headers["www-authenticate"].startswith("Bearer")
        assert b"payload" not in body and b"keys" not in body
    status, headers, _ = server.request(path, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert status == 401


def test_scopes_give_403(server: ServerThread, world: World, results_token: str) -> None:
    """A metrics-only token gets 403 on results; a results-only token gets 403 on metrics."""
    metrics_token = token(world, "read:metrics", name="monitoring")
    assert server.request("/v1/results", metrics_token)[0] == 403
    assert server.request("/v1/keys", metrics_token)[0] == 403
    assert server.request("/v1/metrics", results_token)[0] == 403
    assert server.request("/v1/metrics", metrics_token)[0] == 200
    assert server.request("/v1/openapi.json", metrics_token)[0] == 200


def test_revoked_token_is_refused(server: ServerThread, world: World) -> None:
    """A token works until revoked and then gets 401."""
    tok = token(world, "read:results", name="short-lived")
    assert server.request("/v1/results?limit=1", tok)[0] == 200
    revoke_token(world.ledger_path, token_id(tok) or "")
    assert server.request("/v1/results?limit=1", tok)[0] == 401


def test_health_is_public_and_reveals_only_position(server: ServerThread) -> None:
    """/v1/health needs no token and says only status, last seq and uptime."""
    status, body = server.get_json("/v1/health")
    assert status == 200 and body["status"] == "ok" and body["last_seq"] == 120
    assert set(body) == {"status", "last_seq", "uptime_s"}


def test_metrics_exposition(server: ServerThread, world: World, results_token: str) -> None:
    """/v1/metrics is Prometheus text with request counters, latency histogram and ledger gauges."""
    server.request("/v1/results?limit=2", results_token)
    status, headers, body = server.request("/v1/metrics", token(world, "read:metrics"))
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE ketqua_api_requests_total counter" in text
    assert 'ketqua_api_requests_total{route="/v1/results",code="200"}' in text
    assert 'ketqua_api_request_seconds_bucket{route="/v1/results",le="+Inf"}' in text
    assert "ketqua_ledger_last_seq 120" in text
    assert 'ketqua_ledger_files{state="done"} 3' in text


def test_rate_limit_gives_429_with_retry_after(world: World, results_token: str) -> None:
    """Past the token bucket's burst a request gets 429 with Retry-After; another token is unaffected."""
    s = ServerThread(world, ApiSettings(rate_per_s=0.5, burst=3, token_refresh_s=0)).start()
    try:
        codes = [s.request("/v1/results?limit=1", results_token)[0] for _ in range(5)]
        status, headers, _ = s.request("/v1/results?limit=1", results_token)
        other = token(world, "read:results", name="other")
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert s.request("/v1/results?limit=1", other)[0] == 200
        assert s.request("/v1/health")[0] == 200  # health is not rate limited by tokens
    finally:
        s.stop()


def test_wrong_method_and_unknown_path(server: ServerThread, results_token: str) -> None:
    """POST on a GET endpoint is 405 with Allow; an unknown path is 404; both as problem+json."""
    status, headers, _ = server.request("/v1/results", results_token, method="POST", body=b"{}")
    assert status == 405 and "GET" in headers["allow"]
    status, headers, _ = server.request("/v1/nothing-here", results_token)
    assert status == 404 and headers["content-type"].startswith("application/problem+json")


def test_request_body_over_the_limit_is_413(server: ServerThread, results_token: str) -> None:
    """A request announcing a body larger than the limit is refused with 413 before it is read."""
    status, _, _ = server.request("/v1/results", results_token, headers={"Content-Length": str(10**7)}, body=None)
    assert status in (413, 400)
    status, _, _ = server.request("/v1/results", results_token, method="GET", body=b"x" * 20_000)
    assert status == 413


def test_long_poll_returns_when_a_plate_commits(tmp_path: Path) -> None:
    """With ?wait=, an empty page waits until the next plate commits and then returns its results."""
    w = make_world(tmp_path)
    commit(w, signed_plate(w, 1, 3))
    tok = token(w)
    s = ServerThread(w).start()
    try:
        cursor = json.loads(s.request("/v1/results", tok)[2])["next"]
        later = signed_plate(w, 2, 5)
        timer = threading.Timer(0.3, commit, args=(w, later))
        timer.start()
        t0 = time.monotonic()
        status, _, body = s.request(f"/v1/results?after={cursor}&wait=10", tok)
        waited = time.monotonic() - t0
        timer.join()
        assert status == 200 and [i["seq"] for i in json.loads(body)["items"]] == [4, 5, 6, 7, 8]
        assert 0.2 < waited < 9
        assert s.request(f"/v1/results?after={cursor}&wait=-1", tok)[0] == 400
        assert s.request(f"/v1/results?after={cursor}&wait=nan", tok)[0] == 400
    finally:
        s.stop()


# ---------------------------------------------------------------------- mutual TLS
def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, issuer_key, *, ca: bool,
          server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, *objs) -> str:
    out = b""
    for o in objs:
        if isinstance(o, x509.Certificate):
            out += o.public_bytes(serialization.Encoding.PEM)
        else:
            out += o.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(out)
    return str(path)


def _tls_files(folder: Path) -> dict[str, str]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Test TLS CA", ca_key, None, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert("127.0.0.1", srv_key, ca, ca_key, ca=False, server=True)
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert("national-platform", cli_key, ca, ca_key, ca=False)
    return {
        "ca": _write(folder / "ca.pem", ca),
        "server_cert": _write(folder / "server.pem", srv),
        "server_key": _write(folder / "server.key", srv_key),
        "client_cert": _write(folder / "client.pem", cli),
        "client_key": _write(folder / "client.key", cli_key),
    }


def test_mutual_tls_requires_a_client_certificate_and_logs_its_subject(
    world: World, results_token: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With a client CA configured, a client without a certificate cannot connect; one with a certificate is served and its subject logged."""
    import http.client

    files = _tls_files(tmp_path)
    s = ServerThread(world, ssl_context=server_ssl_context(files["server_cert"], files["server_key"], files["ca"])).start()
    try:
        anonymous = ssl.create_default_context(cafile=files["ca"])
        conn = http.client.HTTPSConnection("127.0.0.1", s.port, context=anonymous, timeout=10)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            conn.request("GET", "/v1/health")
            conn.getresponse().read()
        conn.close()

        mutual = ssl.create_default_context(cafile=files["ca"])
        mutual.load_cert_chain(files["client_cert"], files["client_key"])
        conn = http.client.HTTPSConnection("127.0.0.1", s.port, context=mutual, timeout=10)
        with caplog.at_level(logging.INFO, logger="ketqua"):
            conn.request("GET", "/v1/results?limit=1", headers={"Authorization": f"Bearer {results_token}"})
            resp = conn.getresponse()
            assert resp.status == 200 and len(json.loads(resp.read())["items"]) == 1
            time.sleep(0.1)
        conn.close()
        lines = _logged(caplog).splitlines()
        assert any("commonName=national-platform" in line for line in lines), lines
        assert not any(results_token in line for line in lines)
    finally:
        s.stop()


def test_api_table_of_ketqua_toml_sets_limits_and_mutual_tls(tmp_path: Path) -> None:
    """[api] in ketqua.toml sets the rate limit and turns on mutual TLS for serve(); the pull client works over it."""
    import asyncio

    from engine.client.puller import PullClient, client_ssl_context, read_results

    w = make_world(tmp_path / "lab")
    commit(w, signed_plate(w, 1, 5))
    files = _tls_files(tmp_path)
    w.data.config.write_text(
        "[api]\nrate_per_s = 1000\nburst = 3\n"
        f'tls_certificate = "{files["server_cert"]}"\ntls_key = "{files["server_key"]}"\ntls_client_ca = "{files["ca"]}"\n',
        encoding="utf-8",
    )
    from engine.api.settings import api_config

    settings, tls = api_config(w.data)
    assert (settings.rate_per_s, settings.burst, tls.verify_mode if tls else None) == (1000.0, 3, ssl.CERT_REQUIRED)
    tok = token(w)
    s = ServerThread(w, settings=None).start()  # settings from the file, TLS from the file
    url = f"https://127.0.0.1:{s.port}"

    async def pull(ctx: ssl.SSLContext, out: Path) -> int:
        async with PullClient(url, tok, out, ssl_context=ctx, limit=2) as client:
            return (await client.pull()).items

    try:
        assert asyncio.run(pull(client_ssl_context(files["ca"], files["client_cert"], files["client_key"]), tmp_path / "a")) == 5
        assert len(read_results(tmp_path / "a")) == 5
        with pytest.raises(ApiError):
            asyncio.run(pull(client_ssl_context(files["ca"]), tmp_path / "b"))  # no client certificate
    finally:
        s.stop()


def test_api_table_errors_name_the_setting(tmp_path: Path) -> None:
    """A wrong [api] value is a ConfigError naming the key and what is expected."""
    from engine.api.settings import api_config
    from engine.errors import ConfigError

    w = make_world(tmp_path)
    for text, fragment in (("[api]\nburst = -1\n", "burst: must be a positive number"),
                           ("[api]\nspeed = 3\n", "speed: unknown setting"),
                           ('[api]\ntls_certificate = "x.pem"\n', "both tls_certificate and tls_key"),
                           ('[api]\nprevious_signers = "old.pem"\n', "previous_signers: must be a list")):
        w.data.config.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            api_config(w.data)


def test_access_log_holds_no_personal_data_ids_or_secrets(
    server: ServerThread, results_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Log lines name route templates, status and token id only: no names, national ids, result ids, cursors or tokens."""
    with caplog.at_level(logging.INFO, logger="ketqua"):
        _, _, body = server.request("/v1/results?limit=3", results_token)
        page = json.loads(body)
        rid = page["items"][0]["id"]
        server.request(f"/v1/results/{rid}", results_token)
        server.request(f"/v1/results/{rid}/fhir", results_token)
        server.request(f"/v1/results?after={page['next']}", results_token)
        server.request("/v1/results?after=bogus", results_token)
        server.request(f"/v1/results/{rid}", "kq_0123456789abcdef_" + "A" * 43)
        time.sleep(0.1)
    text = _logged(caplog)
    assert "route=/v1/results/{id} status=200" in text and "route=/v1/results status=400" in text
    secrets = [rid, page["next"], results_token, results_token[20:]]
    for item in page["items"]:
        person = item["payload"]["person"]
        secrets += [person["full_name"], person["national_id"], person["phone"], item["payload"]["specimen"]["id"]]
    assert not [s for s in secrets if s in text]


def test_oversized_request_line_never_logs_its_query_or_cursor(
    server: ServerThread, results_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 16 KB request line with a cursor is refused with 400, and no log line holds the cursor or the query."""
    import socket

    _, _, body = server.request("/v1/results?limit=1", results_token)
    cursor = json.loads(body)["next"]
    query = f"after={cursor}&limit=5&pad=" + "Q" * 16 * 1024
    with caplog.at_level(logging.DEBUG):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(f"GET /v1/results?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {results_token}\r\n\r\n".encode())
            reply = conn.recv(65536)
        time.sleep(0.2)
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0]
    logged = caplog.text + _logged(caplog)
    assert "http request refused" in logged and "LineTooLong" in logged
    for secret in (cursor, "QQQQQQQQ", "after=", results_token):
        assert secret not in logged


def test_unknown_or_revoked_token_is_told_so(server: ServerThread, world: World) -> None:
    """No token: how to send one; a revoked (or unknown) token: that it is unknown or revoked."""
    tok = token(world, "read:results", name="revoked-soon")
    revoke_token(world.ledger_path, token_id(tok) or "")
    status, body = server.get_json("/v1/results?limit=1", tok)
    assert status == 401 and "unknown or revoked" in body["detail"]
    status, body = server.get_json("/v1/results?limit=1")
    assert status == 401 and "Authorization: Bearer" in body["detail"]
