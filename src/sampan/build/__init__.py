"""Dockerfile builds: the parser (``dockerfile``) and the classic builder (``builder``)."""
