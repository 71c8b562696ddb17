"""The data folder layout (DESIGN.md): one place that knows where things live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataDir:
    """Paths under one data folder; :meth:`create` makes the folders (keys/ private)."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> "DataDir":
        return cls(Path(root).expanduser().resolve())

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def certificates(self) -> Path:
        return self.root / "certificates"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite3"

    @property
    def config(self) -> Path:
        return self.root / "ketqua.toml"

    def create(self) -> "DataDir":
        for folder in (self.inbox, self.archive, self.quarantine, self.certificates, self.exports):
            folder.mkdir(parents=True, exist_ok=True)
        self.keys.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys, 0o700)
        return self
