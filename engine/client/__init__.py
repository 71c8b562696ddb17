"""The reference puller: what the national platform runs to pull and verify signed results.

Imports nothing from the server side; it reads the API as any outside client would.
"""

from engine.client.puller import PullClient, read_results, verify_item

__all__ = ["PullClient", "read_results", "verify_item"]
