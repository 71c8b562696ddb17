"""ketqua's engine: the shared model, the ledger, assay rules, pool decoding, the pipeline and the API."""

__version__ = "0.1.0"
