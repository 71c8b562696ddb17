"""Analyzer file parsers: one module per instrument family, one registry.

    from parsers import parse_file, parse_bytes, formats
"""

from parsers.registry import check_complete, detect, formats, incomplete, parse_bytes, parse_file, register

__all__ = ["check_complete", "detect", "formats", "incomplete", "parse_bytes", "parse_file", "register"]
