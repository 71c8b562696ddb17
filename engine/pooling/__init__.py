"""Pool designs, decoders and the simulator.

Public API (docs/interfaces.md, "Pooling"): :class:`Design`, :func:`design_from_manifest`,
:func:`parse_spec`, :func:`generate`, :func:`decode` -> :class:`Decoding`; plus the batch
form :func:`decode_batch`, stage 2 :func:`complete`, text designs :func:`load_design`,
design :func:`properties` and pipetting worklists.
"""

from engine.pooling.decoders import (
    DECODERS,
    BatchDecoding,
    Decoding,
    bound_from_prevalence,
    complete,
    decode,
    decode_batch,
    estimate_loads,
    pool_codes_for,
)
from engine.pooling.designs import (
    GENERATORS,
    Design,
    design_from_manifest,
    generate,
    load_design,
    manifest_aliquots,
    parse_spec,
)
from engine.pooling.properties import properties
from engine.pooling.simulate import NoiseModel, simulate

__all__ = [
    "DECODERS",
    "GENERATORS",
    "BatchDecoding",
    "Decoding",
    "Design",
    "bound_from_prevalence",
    "complete",
    "decode",
    "decode_batch",
    "design_from_manifest",
    "estimate_loads",
    "generate",
    "load_design",
    "manifest_aliquots",
    "parse_spec",
    "pool_codes_for",
    "properties",
    "simulate",
    "NoiseModel",
]
