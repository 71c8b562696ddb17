"""Intake: what arrives in the inbox, taken only when complete, archived byte for byte, then acknowledged.

Owns watching the inbox (inotify, stability, write leases), the archive of
received bytes, and reading pool manifests. Parsing analyzer files belongs to
``parsers/``; recording what was received belongs to the ledger.
"""

from engine.intake.manifest import looks_like_manifest, read_manifest
from engine.intake.watcher import Intake, Taken, ignored, kind_of

__all__ = ["Intake", "Taken", "ignored", "kind_of", "looks_like_manifest", "read_manifest"]
