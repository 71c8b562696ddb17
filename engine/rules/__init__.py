"""Assay rules: each kit's targets, Ct cut-offs and internal control, as data (``profiles/*.toml``).

Turns a run's per-target Ct values into one call per tube or pool. Knows
nothing of pools' members (that is ``engine.pooling``) or of signing.
"""

from engine.rules.assays import (
    AssayProfile,
    Target,
    available_profiles,
    load_profile,
    profile_for,
)

__all__ = ["AssayProfile", "Target", "available_profiles", "load_profile", "profile_for"]
