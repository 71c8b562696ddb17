"""The pipeline: plates from received files to committed, signed results, and the service that runs it.

Owns the per-plate worker job (parse → rules → decode → sign), the
:class:`Engine` that feeds plates and commits their outcomes, and the
long-running service (watcher, workers, API) behind ``ketqua run``.
"""

from engine.pipeline.engine import Engine, Summary
from engine.pipeline.service import Service, run_service, serve

__all__ = ["Engine", "Service", "Summary", "run_service", "serve"]
