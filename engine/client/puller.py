"""The reference pull client: what the national platform runs against a lab's API.

``ketqua pull --url … --token … --out DIR [--follow]`` pulls the NDJSON feed from
its saved cursor, verifies every result, and appends it to ``DIR/results.ndjson``
exactly once, in ``seq`` order, even across crashes and restarts.

Trust. With ``--trust PEM`` (the lab's CA certificate, ``<data>/keys/ca.pem`` of
the lab), every key in the server's JWKS must chain to that CA through its
``x5c`` chain; keys that do not are refused, and so is every result they
signed. Without ``--trust`` the client trusts the keys the server publishes
(trust on first use over TLS): it still proves each result was signed by the
published key and not altered, but not *whose* key that is. Each item's JWS
is verified against the trusted keys and its payload must equal the item's
``payload``; each HC1 is verified (COSE signature, kid, certificate validity at
issuance) with ``signing.verify.verify_hc1`` against the trusted signer certificates.

Exactly once. ``DIR/state.json`` holds the cursor of the current page start,
the last ``seq`` written and the byte size of ``results.ndjson`` at that
moment. Items are appended, fsynced, then the state is replaced atomically.
After a crash, bytes past the recorded size are cut off and the page is
fetched again from its cursor; items with ``seq`` ≤ the recorded one are skipped.

The transparency log (docs/transparency.md). The client rebuilds the lab's log
from what it pulls: item *k* must carry ``log_index`` *k* (the feed holds every
leaf, in order), and its JWS is leaf *k*. ``state.json`` keeps the frontier of
that tree (its size and log₂ n subtree hashes) and the last signed checkpoint
it verified. Before a batch of items is written, it fetches the lab's current
checkpoint, checks its signature with the lab's key (the trusted JWKS
certificates), checks it extends the trusted one (consistency proof), and
checks that the tree of every result pulled so far is the start of the signed
tree (one consistency proof from its own size): that proves the inclusion of
every result of the batch in one request (:mod:`engine.client.transparency`). A failure is :class:`ForkDetected`;
the batch is not written, and the conflicting note is kept as ``DIR/fork.note``
beside the trusted one in ``state.json``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import fcntl
import json
import multiprocessing
import os
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from engine.client.transparency import (
    batch_leaf_hashes,
    check_head,
    open_lab_checkpoint,
)
from engine.errors import ApiError, VerificationError
from engine.files import write_atomically
from engine.results.payloads import NDJSON
from signing.dcc import same_uvci, test_entry
from signing.errors import ForkDetected, ProofError
from signing.jwk import b64url, jwk_public_key
from signing.jws import verify_compact
from signing.keys import certificate_kid
from signing.merkle import CompactRange, ConsistencyProof, b64, b64_hash
from signing.trust import validate_chain
from signing.verify import verify_hc1

RESULTS_FILE = "results.ndjson"
STATE_FILE = "state.json"
FORK_FILE = "fork.note"


@dataclass
class PullState:
    """Where a pull stands (persisted as ``state.json`` next to the results)."""

    url: str
    cursor: str | None = None  # page start: re-requested after a crash
    last_seq: int = 0  # last seq written to results.ndjson
    size: int = 0  # bytes of results.ndjson that are committed
    count: int = 0  # items written
    checkpoint: str | None = None  # the last signed checkpoint note verified (the log's trusted head)
    log_size: int = 0  # leaves of the log written to results.ndjson (= their count: the feed holds every leaf)
    log_frontier: list[str] | None = None  # base64 subtree hashes of those leaves (signing.merkle.CompactRange)


@dataclass
class PullStats:
    """What one :meth:`PullClient.pull` call did."""

    items: int = 0
    pages: int = 0
    skipped: int = 0  # duplicates from a re-fetched page
    seconds: float = 0.0
    last_seq: int = 0


@dataclass(frozen=True)
class TrustedKeys:
    """The JWKS keys that passed the trust check, and their signer certificates (for HC1)."""

    jwks: dict[str, Any]
    signers: tuple[x509.Certificate, ...]


def trusted_keys(jwks: dict[str, Any], roots: Sequence[x509.Certificate] | None, *, at: dt.datetime | None = None) -> TrustedKeys:
    """Check every JWKS key against its ``x5c`` certificate and (with ``roots``) the chain to a root.

    A key whose public key differs from its certificate, or whose chain does not
    reach a root, is dropped; if none is left, :class:`VerificationError`.
    """
    when = at or dt.datetime.now(dt.timezone.utc)
    kept: list[dict[str, Any]] = []
    signers: list[x509.Certificate] = []
    problems: list[str] = []
    for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in jwk.get("x5c") or []]
        except (ValueError, TypeError):
            problems.append(f"key {jwk.get('kid')!r}: x5c is not base64 DER certificates")
            continue
        if not chain:
            problems.append(f"key {jwk.get('kid')!r} has no x5c certificate chain")
            continue
        leaf = chain[0]
        key = jwk_public_key(jwk)
        if key is None or key.public_numbers() != leaf.public_key().public_numbers():  # type: ignore[attr-defined]
            problems.append(f"key {jwk.get('kid')!r}: the public key is not the one in its certificate")
            continue
        if jwk.get("kid") != b64url(certificate_kid(leaf)).decode("ascii"):
            problems.append(f"key {jwk.get('kid')!r}: kid does not match its certificate")
            continue
        if roots is not None:
            try:
                validate_chain(leaf, chain[1:], list(roots), when)
            except VerificationError as exc:
                problems.append(f"key {jwk.get('kid')!r}: {exc}")
                continue
        kept.append(jwk)
        signers.append(leaf)
    if not kept:
        raise VerificationError(
            "the server publishes no trusted signing key: " + ("; ".join(problems) or "the JWKS is empty"),
            reason="untrusted-chain",
        )
    return TrustedKeys({"keys": kept}, tuple(signers))


def verify_item(item: dict[str, Any], keys: TrustedKeys) -> None:
    """Verify one feed item: JWS signature and payload, HC1 signature and certificate; raise otherwise."""
    seq, rid = item.get("seq"), item.get("id")
    where = f"result {rid} (seq {seq})"
    try:
        body = verify_compact(item["jws"], keys.jwks)
        payload = json.loads(body)
        if payload != item["payload"]:
            raise VerificationError(f"{where}: the payload differs from the signed one", reason="payload-mismatch")
        if payload.get("id") != rid or payload.get("version") != item.get("version"):
            raise VerificationError(f"{where}: id/version differ from the signed payload", reason="payload-mismatch")
        issued = dt.datetime.fromisoformat(str(payload.get("issued_at")).replace("Z", "+00:00"))
        # The QR is checked as of its issuance: an old result whose QR has expired is still authentic.
        report = verify_hc1(item["hc1"], list(keys.signers), at=issued)
        # A validly signed QR of *another* result must not pass: its DCC must be the one this payload gives.
        expected = test_entry(payload)
        dcc = report.content["dcc"]
        t, e = (dcc.get("t") or [{}])[0], expected["t"][0]
        # same_uvci: a QR signed before issue 16 carries the old check character of the same UVCI.
        if not same_uvci(str(t.get("ci")), e["ci"]) or (t.get("tr"), dcc.get("nam"), dcc.get("dob")) != (e["tr"], expected["nam"], expected["dob"]):
            raise VerificationError(f"{where}: the HC1 QR belongs to another result or outcome", reason="payload-mismatch")
    except VerificationError as exc:
        if str(exc).startswith(where):
            raise
        raise VerificationError(f"{where}: {exc}", reason=exc.reason) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"{where}: malformed item ({exc})", reason="malformed") from exc


def _seq_of(line: bytes) -> int | None:
    """The seq of an item line: read from the prefix the server writes, else by parsing the JSON."""
    if line.startswith(b'{"seq":'):
        end = line.find(b",", 7)
        if 7 < end < 30 and line[7:end].isdigit():
            return int(line[7:end])
    try:
        seq = json.loads(line).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _verify_lines(lines: list[bytes], keys: TrustedKeys) -> list[VerificationError | None]:
    out: list[VerificationError | None] = []
    for line in lines:
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise VerificationError("a feed line is not a JSON object", reason="malformed")
            verify_item(item, keys)
            out.append(None)
        except VerificationError as exc:
            out.append(exc)
        except ValueError as exc:
            out.append(VerificationError(f"a feed line is not JSON ({exc})", reason="malformed"))
    return out


_WORKER_KEYS: TrustedKeys | None = None


def _init_worker(jwks: dict[str, Any], signers_der: list[bytes]) -> None:
    global _WORKER_KEYS
    _WORKER_KEYS = TrustedKeys(jwks, tuple(x509.load_der_x509_certificate(d) for d in signers_der))


def _verify_in_worker(lines: list[bytes]) -> list[tuple[str, str] | None]:
    """Worker side: (message, reason) per failure, since exceptions with keyword fields do not pickle whole."""
    assert _WORKER_KEYS is not None
    return [None if e is None else (str(e), e.reason) for e in _verify_lines(lines, _WORKER_KEYS)]


def client_ssl_context(cacert: str | None = None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """TLS for the client: ``cacert`` to trust the server's certificate, ``cert``/``key`` for mutual TLS."""
    try:
        ctx = ssl.create_default_context(cafile=cacert)
        if cert:
            ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ApiError(f"cannot set up TLS for the client ({exc})") from exc
    return ctx


class PullClient:
    """Pulls the feed of one server into one output folder; use ``async with``."""

    def __init__(
        self,
        url: str,
        token: str,
        out: str | os.PathLike[str],
        *,
        trust: Sequence[x509.Certificate] | None = None,
        limit: int = 1000,
        verify: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        checkpoint_items: int = 10_000,
        workers: int = 1,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.out = Path(out)
        self.trust = list(trust) if trust is not None else None
        self.limit = limit
        self.verify = verify
        self.ssl_context = ssl_context
        self.checkpoint_items = checkpoint_items
        self.keys: TrustedKeys | None = None
        self.session: aiohttp.ClientSession | None = None
        self.state = PullState(self.url)
        self._results: Any = None
        self.skipped_total = 0
        self.workers = max(1, workers)
        self._lock: Any = None
        self._pool: ProcessPoolExecutor | None = None
        self._taken = 0  # last seq verified in the current page (written or pending)

    # ----------------------------------------------------------- lifecycle
    async def __aenter__(self) -> "PullClient":
        self.out.mkdir(parents=True, exist_ok=True)
        # One writer per folder: a second pull into the same folder would interleave appends.
        self._lock = open(self.out / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise ApiError(f"another pull is writing to {self.out}; wait for it or use another --out") from None
        self.state = self._load_state()
        self._results = open(self.out / RESULTS_FILE, "ab")
        connector = aiohttp.TCPConnector(limit=4, ssl=self.ssl_context if self.ssl_context is not None else True)
        self.session = aiohttp.ClientSession(
            connector=connector,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self.session is not None:
            await self.session.close()
        if self._results is not None:
            self._results.close()
        if self._lock is not None:
            self._lock.close()  # releases the flock

    def _load_state(self) -> PullState:
        path = self.out / STATE_FILE
        results = self.out / RESULTS_FILE
        if path.exists():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                state = PullState(**raw)
            except (ValueError, TypeError) as exc:
                raise ApiError(f"{path} is damaged ({exc}); move the folder aside and pull again") from exc
            if state.url != self.url:
                raise ApiError(f"{self.out} holds results pulled from {state.url}, not {self.url}; use another --out")
        else:
            state = PullState(self.url)
        size = results.stat().st_size if results.exists() else 0
        if size < state.size:
            raise ApiError(
                f"{results} is shorter ({size} bytes) than recorded ({state.size}); it was edited or truncated. "
                "Move the folder aside and pull again"
            )
        if size > state.size:
            # Items appended after the last checkpoint (a crash between append and state save): drop them,
            # they are fetched again from the saved cursor.
            with open(results, "r+b") as fh:
                fh.truncate(state.size)
        return state

    def _checkpoint(self) -> None:
        self._results.flush()
        os.fsync(self._results.fileno())
        self.state.size = self._results.tell()
        write_atomically(self.out / STATE_FILE, json.dumps(asdict(self.state)).encode("utf-8"))

    # ----------------------------------------------------------- HTTP
    async def _get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        assert self.session is not None, "use `async with PullClient(...)`"
        try:
            resp = await self.session.get(self.url + path, **kw)
        except aiohttp.ClientError as exc:
            raise ApiError(f"cannot reach {self.url} ({exc})") from exc
        if resp.status >= 400:
            try:
                detail = (await resp.json(content_type=None)).get("detail", "")
            except (ValueError, aiohttp.ClientError, AttributeError):
                detail = ""
            resp.release()
            error = ApiError(f"{self.url}{path.split('?')[0]}: HTTP {resp.status} {resp.reason}. {detail}".strip())
            error.status = resp.status  # type: ignore[attr-defined]
            raise error
        return resp

    async def load_keys(self) -> TrustedKeys:
        """Fetch the JWKS and keep the keys that pass the trust check."""
        resp = await self._get("/v1/keys")
        async with resp:
            jwks = await resp.json(content_type=None)
        self.keys = trusted_keys(jwks, self.trust)
        if self.workers > 1:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
            # forkserver: the client may run beside threads (a server in tests, aiohttp's resolver); fork is unsafe then.
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_init_worker,
                initargs=(self.keys.jwks, [c.public_bytes(serialization.Encoding.DER) for c in self.keys.signers]),
            )
        return self.keys

    async def pull_page(self, *, wait: float = 0.0) -> tuple[int, bool]:
        """Fetch one page after the saved cursor, verify, append; returns ``(items written, more)``."""
        if self.verify and self.keys is None:
            await self.load_keys()
        params = {"limit": str(self.limit)}
        if self.state.cursor:
            params["after"] = self.state.cursor
        if wait:
            params["wait"] = f"{wait:g}"
        resp = await self._get("/v1/results", params=params, headers={"Accept": NDJSON})
        written = 0
        skipped = 0
        pending: list[tuple[int, bytes]] = []
        self._taken = self.state.last_seq
        async with resp:
            next_cursor = resp.headers.get("X-Next-Cursor")
            more = resp.headers.get("X-More") == "true"
            if not next_cursor:
                raise ApiError(f"{self.url}: the feed answered without X-Next-Cursor; is this a ketqua server?")
            buffer = b""
            try:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    buffer += chunk
                    lines = buffer.split(b"\n")
                    buffer = lines.pop()
                    skipped += await self._take(lines, pending)
                    if len(pending) >= self.checkpoint_items:
                        written += await self._commit(pending)
            except aiohttp.ClientPayloadError as exc:
                await self._commit(pending)  # keep what was verified; the page is fetched again from its start
                raise ApiError(f"{self.url}: the feed stream broke off ({exc}); run again to resume") from exc
            if buffer.strip():
                skipped += await self._take([buffer], pending)
        written += await self._commit(pending)
        if not written and self.verify:
            await self._check_log([])  # nothing new: still check the lab's head extends the trusted one (a witness)
        self.state.cursor = next_cursor
        self._checkpoint()
        self.skipped_total += skipped
        return written, more

    async def _take(self, lines: list[bytes], pending: list[tuple[int, bytes]]) -> int:
        """Verify complete lines in order and add them to ``pending``; returns how many were skipped as already held.

        At the first line that fails, what was verified before it is written
        (after the log check) and the failure is raised: nothing after it is written.
        """
        fresh: list[tuple[int, bytes]] = []
        skipped = 0
        last = self._taken
        for line in lines:
            line = line.rstrip(b"\r")
            if not line.strip():
                continue
            seq = _seq_of(line)
            if seq is None:
                await self._commit(pending + fresh)
                raise ApiError(f"{self.url}: a feed line is not a result item: {line[:60]!r}")
            if seq <= last:
                skipped += 1
                continue
            fresh.append((seq, line))
            last = seq
        failures: list[VerificationError | None] = [None] * len(fresh)
        if self.verify and fresh:
            failures = await self._verify([line for _, line in fresh])
            if any(f is not None and f.reason == "unknown-kid" for f in failures):
                # The lab may have rotated its signer: fetch the JWKS again (through the same trust check) once.
                await self.load_keys()
                failures = await self._verify([line for _, line in fresh])
        for i, failure in enumerate(failures):
            if failure is not None:
                pending += fresh[:i]
                await self._commit(pending)  # everything before the bad item stays; nothing after it is written
                raise failure
        pending += fresh
        self._taken = last
        return skipped

    async def _commit(self, pending: list[tuple[int, bytes]]) -> int:
        """Check the log for the verified lines in ``pending``, append them, save the state; empties ``pending``."""
        if not pending:
            return 0
        frontier = await self._check_log([line for _, line in pending]) if self.verify else None
        for seq, line in pending:
            self._results.write(line + b"\n")
            self.state.last_seq = seq
            self.state.count += 1
        if frontier is not None:
            self.state.log_size = frontier.size
            self.state.log_frontier = [b64(h) for h in frontier.hashes]
        n = len(pending)
        pending.clear()
        self._checkpoint()
        return n

    # ----------------------------------------------------------- transparency log
    def _frontier(self) -> CompactRange:
        """The saved frontier of the leaves written so far."""
        try:
            hashes = tuple(b64_hash(h, f"{STATE_FILE}: log_frontier") for h in self.state.log_frontier or [])
            return CompactRange(self.state.log_size, hashes)
        except (ProofError, ValueError) as exc:
            raise ApiError(f"{self.out / STATE_FILE} is damaged ({exc}); move the folder aside and pull again") from exc

    async def _check_log(self, lines: list[bytes]) -> CompactRange:
        """Prove that the lines are the next leaves of the lab's signed log; the frontier including them.

        Raises :class:`ForkDetected` (after keeping the conflicting note) when the lab's
        log does not extend the trusted checkpoint or does not hold exactly what was pulled.
        """
        frontier, _ = self._frontier().extend(batch_leaf_hashes(lines, self.state.log_size))
        resp = await self._get("/v1/log/checkpoint")
        async with resp:
            note = (await resp.read()).decode("utf-8", "replace")
        assert self.keys is not None
        cp = open_lab_checkpoint(note, self.keys.signers, self.state.checkpoint, source=f"{self.url}/v1/log/checkpoint")
        try:
            await check_head(cp, self.state.checkpoint, frontier, self._consistency)
        except ForkDetected as exc:
            write_atomically(self.out / FORK_FILE, note.encode("utf-8"))
            raise ForkDetected(
                f"{exc}. Nothing after the fork was written; the conflicting checkpoint is in {self.out / FORK_FILE}, "
                f"the trusted one in {self.out / STATE_FILE}: together they are the evidence"
            ) from exc
        self.state.checkpoint = note
        return frontier

    async def _consistency(self, old: int, new: int) -> tuple[bytes, ...]:
        resp = await self._get(f"/v1/log/consistency?from={old}&to={new}")
        async with resp:
            body = await resp.json(content_type=None)
        return ConsistencyProof.from_json(body, source=f"{self.url}/v1/log/consistency").hashes

    async def _verify(self, lines: list[bytes]) -> list[VerificationError | None]:
        """Verification outcome per line: in this process, or spread over the worker pool."""
        assert self.keys is not None
        if self._pool is None or len(lines) < 16:  # a handful is cheaper verified here than shipped
            return _verify_lines(lines, self.keys)
        loop = asyncio.get_running_loop()
        size = -(-len(lines) // self.workers)
        batches = [lines[i : i + size] for i in range(0, len(lines), size)]
        results = await asyncio.gather(*(loop.run_in_executor(self._pool, _verify_in_worker, b) for b in batches))
        return [None if f is None else VerificationError(f[0], reason=f[1]) for batch in results for f in batch]

    async def pull(
        self, *, follow: bool = False, wait: float = 10.0, max_pages: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> PullStats:
        """Pull pages until caught up (or forever with ``follow``, long-polling ``wait`` seconds)."""
        stats = PullStats()
        t0 = time.perf_counter()
        before = self.skipped_total
        backoff = 1.0
        more = True
        while stop is None or not stop.is_set():
            if max_pages is not None and stats.pages >= max_pages:
                break
            try:
                n, more = await self.pull_page(wait=0.0 if more or not follow else wait)
                backoff = 1.0
            except ApiError as exc:
                # Retry what may pass (server restarting, network, 429, 5xx); a refused token or cursor will not.
                if not follow or getattr(exc, "status", None) in (400, 401, 403, 404):
                    raise
                await asyncio.sleep(backoff)  # server restarting or network gone: try again, same cursor
                backoff = min(backoff * 2, 60.0)
                continue
            stats.pages += 1
            stats.items += n
            if not more and not follow:
                break
        stats.seconds = time.perf_counter() - t0
        stats.last_seq = self.state.last_seq
        stats.skipped = self.skipped_total - before
        return stats


def read_results(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The items a pull wrote (for tests and small checks; big files are better streamed)."""
    path = Path(out) / RESULTS_FILE
    if not path.exists():
        return []
    with open(path, "rb") as fh:
        return [json.loads(line) for line in fh if line.strip()]
