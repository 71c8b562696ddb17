"""The combinatorics behind the designs: finite fields GF(p^m) for Reed–Solomon and STD, Steiner triple systems.

Pure mathematics with no notion of pools; :mod:`engine.pooling.designs` builds designs from it.
"""

from __future__ import annotations

import itertools
import random

import numpy as np

__all__ = ["GaloisField", "prime_power", "steiner_triples"]


class GaloisField:
    """GF(p^m) for q = p^m ≤ 256: elements are ints 0..q-1 (base-p digit vectors); add/mul tables."""

    def __init__(self, q: int) -> None:
        p, m = prime_power(q)
        self.q, self.p, self.m = q, p, m
        digits = np.array([[(x // p**i) % p for i in range(m)] for x in range(q)], dtype=np.int64)
        weights = p ** np.arange(m)
        self.add = ((digits[:, None, :] + digits[None, :, :]) % p) @ weights
        modulus = _irreducible(p, m)
        mul = np.zeros((q, q), dtype=np.int64)
        for a in range(q):
            for b in range(q):
                prod = np.zeros(2 * m - 1, dtype=np.int64)
                for i in range(m):
                    prod[i : i + m] += digits[a, i] * digits[b]
                prod %= p
                for deg in range(2 * m - 2, m - 1, -1):  # reduce by the monic modulus
                    coef = prod[deg]
                    if coef:
                        prod[deg - m : deg + 1] = (prod[deg - m : deg + 1] - coef * modulus) % p
                mul[a, b] = int(prod[:m] @ weights)
        self.mul = mul

    def poly_eval(self, coeffs: np.ndarray, x: int) -> np.ndarray:
        """Evaluate many polynomials (rows of ``coeffs``, lowest degree first) at the element ``x``."""
        acc = np.zeros(coeffs.shape[0], dtype=np.int64)
        for c in range(coeffs.shape[1] - 1, -1, -1):
            acc = self.add[self.mul[acc, x], coeffs[:, c]]
        return acc


def prime_power(q: int) -> tuple[int, int]:
    """(p, m) with q = p^m; ValueError when q is not a prime power."""
    for p in range(2, q + 1):
        if q % p == 0:
            m, rest = 0, q
            while rest % p == 0:
                rest //= p
                m += 1
            if rest != 1:
                raise ValueError(f"{q} is not a prime power; Reed–Solomon and STD designs need an alphabet of prime-power size")
            return p, m
    raise ValueError(f"{q} is not a prime power")


def _irreducible(p: int, m: int) -> np.ndarray:
    """The first monic irreducible polynomial of degree m over GF(p), lowest coefficient first."""
    if m == 1:
        return np.array([0, 1], dtype=np.int64)

    def divides(d: tuple[int, ...], f: list[int]) -> bool:
        r = list(f)
        dd = len(d) - 1
        for deg in range(len(r) - 1, dd - 1, -1):
            coef = r[deg] % p
            if coef:
                for i in range(dd + 1):
                    r[deg - dd + i] = (r[deg - dd + i] - coef * d[i]) % p
        return not any(x % p for x in r[:dd])

    for tail in itertools.product(range(p), repeat=m):
        f = list(tail) + [1]
        if f[0] == 0:
            continue
        reducible = False
        for deg in range(1, m // 2 + 1):
            for low in itertools.product(range(p), repeat=deg):
                if divides(tuple(low) + (1,), f):
                    reducible = True
                    break
            if reducible:
                break
        if not reducible:
            return np.array(f, dtype=np.int64)
    raise ValueError(f"no irreducible polynomial of degree {m} over GF({p})")  # pragma: no cover



def steiner_triples(v: int) -> list[tuple[int, int, int]]:
    """A Steiner triple system on v points (v ≡ 1 or 3 mod 6): every pair of points in exactly one triple.

    v ≡ 3 (mod 6) uses Bose's construction; v ≡ 1 (mod 6) uses Stinson's hill-climbing
    with a fixed seed, so the result is the same on every run.
    """
    if v % 6 not in (1, 3) or v < 7:
        raise ValueError(f"a Steiner triple system needs v ≡ 1 or 3 (mod 6), v ≥ 7; got {v}")
    if v % 6 == 3:
        t = v // 3
        half = (t + 1) // 2  # inverse of 2 mod t (t odd)

        def op(x: int, y: int) -> int:
            return ((x + y) * half) % t

        triples = [(x, x + t, x + 2 * t) for x in range(t)]
        for i in range(3):
            j = (i + 1) % 3
            for x in range(t):
                for y in range(x + 1, t):
                    triples.append((x + i * t, y + i * t, op(x, y) + j * t))
        return [tuple(sorted(tr)) for tr in triples]  # type: ignore[misc]
    return _stinson(v)


def _stinson(v: int) -> list[tuple[int, int, int]]:
    """Stinson's hill-climbing: add a triple on two uncovered pairs of a point, evicting a clash."""
    rng = random.Random(v)
    third: dict[tuple[int, int], int] = {}  # (a, b) -> c for every ordered pair of a block {a, b, c}
    unpaired = [set(range(v)) - {x} for x in range(v)]
    blocks, target = 0, v * (v - 1) // 6
    while blocks < target:
        x = rng.choice([p for p in range(v) if unpaired[p]])
        y, z = rng.sample(sorted(unpaired[x]), 2)
        if (y, z) in third:
            w = third[(y, z)]
            for a, b in ((w, y), (w, z), (y, z)):
                del third[(a, b)], third[(b, a)]
                unpaired[a].add(b)
                unpaired[b].add(a)
            blocks -= 1
        for a, b, c in ((x, y, z), (y, z, x), (z, x, y)):
            third[(a, b)] = c
            third[(b, a)] = c
        for a, b in ((x, y), (x, z), (y, z)):
            unpaired[a].discard(b)
            unpaired[b].discard(a)
        blocks += 1
    return sorted({tuple(sorted((a, b, c))) for (a, b), c in third.items()})  # type: ignore[misc]
