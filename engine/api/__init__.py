"""The pull API for the national platform: routes, authentication, cursors, the feed, bulk export, OpenAPI.

Served by aiohttp in the same process as the pipeline (``ketqua run``); reads
the ledger only through its store interface.
"""

from engine.api.app import create_app, serve
from engine.api.settings import ApiSettings, api_config

__all__ = ["ApiSettings", "api_config", "create_app", "serve"]
