"""Child process of the pooling stage: first-call and warm-call times of the numba decoders.

Run as ``python -m bench.numba_cold``; prints one JSON object. The parent sets
``NUMBA_CACHE_DIR`` to an empty folder for a cold start (every kernel compiles)
and runs it again on the same folder to time loading from the on-disk cache
(``cache=True``), which is what a restarted ketqua worker does.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    t0 = time.perf_counter()
    from bench import workloads
    from engine.pooling import decode_batch, generate

    timings: dict[str, float] = {"import_s": time.perf_counter() - t0}
    cases = (
        ("dorfman", "dorfman:10", 3840, {}),
        ("dd", "pbest:384x48", None, {}),
        ("exact", "pbest:384x48", None, {"max_positives": 6}),
    )
    for decoder, spec, n, kwargs in cases:
        design = generate(spec, n) if n else generate(spec)
        codes = workloads.simulate_design(design.incidence, 64, positives=6 if decoder == "exact" else None, prevalence=0.02, seed=5).pool_codes
        t = time.perf_counter()
        decode_batch(design, codes, decoder=decoder, **kwargs)
        timings[f"{decoder}_first_s"] = time.perf_counter() - t
        t = time.perf_counter()
        decode_batch(design, codes, decoder=decoder, **kwargs)
        timings[f"{decoder}_warm_s"] = time.perf_counter() - t
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
