"""The API's limits and TLS, from ``[api]`` in ``<data>/ketqua.toml`` (docs/api.md is the operator's page)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import read_config_file
from engine.datadir import DataDir
from engine.errors import ApiError


@dataclass(frozen=True)
class ApiSettings:
    """Limits of the server; defaults suit one national consumer plus monitoring."""

    default_limit: int = 100
    max_limit: int = 1000  # JSON pages: the page is held in memory
    max_ndjson_limit: int = 100_000  # NDJSON pages are streamed in chunks
    chunk: int = 1000  # ledger rows read per step of a stream
    max_wait_s: float = 30.0  # long-poll ceiling for ?wait=
    # Token bucket per token: a consumer reading one result after another (~200/s) never meets it;
    # a runaway loop does, long before it can starve other consumers.
    rate_per_s: float = 500.0
    burst: int = 1000
    max_request_bytes: int = 16 * 1024  # no endpoint takes a body
    token_refresh_s: float = 1.0  # revocations take effect within this
    max_export_jobs: int = 2  # concurrent bulk exports
    # PEM files (leaf first, then its chain) of signer certificates retired by a key rotation:
    # published in /v1/keys beside the current signer so older results still verify.
    previous_signers: tuple[str, ...] = ()



_TLS_KEYS = ("tls_certificate", "tls_key", "tls_client_ca")


def api_config(data: DataDir) -> tuple[ApiSettings, ssl.SSLContext | None]:
    """Settings and TLS from the ``[api]`` table of ``<data>/ketqua.toml`` (defaults when absent).

    ::

        [api]
        rate_per_s = 500            # per token
        burst = 1000
        max_limit = 1000            # JSON page size cap (NDJSON: max_ndjson_limit)
        tls_certificate = "tls/server.pem"   # paths relative to the data folder
        tls_key = "tls/server.key"
        tls_client_ca = "tls/clients-ca.pem" # set => mutual TLS: a client certificate is required
        previous_signers = ["keys/signer-2026.pem"] # retired signer certificates still published in /v1/keys
    """
    raw, _ = read_config_file(data)  # checks [api] with api_problems, among all sections
    if raw is None:
        return ApiSettings(), None
    table = raw.get("api", {})
    defaults = ApiSettings()
    values: dict[str, Any] = {"previous_signers": tuple(table.get("previous_signers", ()))}
    for key in (set(defaults.__dataclass_fields__) & set(table)) - {"previous_signers"}:
        values[key] = type(getattr(defaults, key))(table[key])
    settings = ApiSettings(**values)
    tls = {k: table.get(k) for k in _TLS_KEYS}
    if not any(tls.values()):
        return settings, None
    resolve = lambda p: str(p if Path(p).is_absolute() else data.root / p)  # noqa: E731
    client_ca = resolve(tls["tls_client_ca"]) if tls["tls_client_ca"] else None
    return settings, server_ssl_context(resolve(tls["tls_certificate"]), resolve(tls["tls_key"]), client_ca)


def api_problems(table: dict[str, Any]) -> tuple[set[str], list[tuple[str, str]]]:
    """The settings ``[api]`` knows and every problem of their values (see ``engine.config.SECTIONS``)."""
    defaults = ApiSettings()
    known = set(defaults.__dataclass_fields__) | set(_TLS_KEYS)
    problems: list[tuple[str, str]] = []
    previous = table.get("previous_signers", [])
    if not isinstance(previous, list) or not all(isinstance(p, str) for p in previous):
        problems.append(("previous_signers", f"must be a list of certificate file paths, got {previous!r}"))
    for key in sorted((set(defaults.__dataclass_fields__) & set(table)) - {"previous_signers"}):
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append((key, f"must be a positive number, got {value!r}"))
        elif isinstance(getattr(defaults, key), int) and not isinstance(value, int):
            problems.append((key, f"must be a whole number, got {value!r}"))
    for key in _TLS_KEYS:
        if key in table and not isinstance(table[key], str):
            problems.append((key, f"must be a file path, got {table[key]!r}"))
    if any(table.get(k) for k in _TLS_KEYS) and not (table.get("tls_certificate") and table.get("tls_key")):
        problems.append(("tls_certificate" if not table.get("tls_certificate") else "tls_key", "TLS needs both tls_certificate and tls_key"))
    return known, problems


def server_ssl_context(certfile: str, keyfile: str, client_ca: str | None = None) -> ssl.SSLContext:
    """TLS for the server; with ``client_ca`` every client must present a certificate issued by it (mutual TLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile, keyfile)
        if client_ca:
            ctx.load_verify_locations(cafile=client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ApiError(f"cannot set up TLS from {certfile} / {keyfile} / {client_ca}: {exc}") from exc
    return ctx

