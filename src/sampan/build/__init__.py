"""Dockerfile builds, the pure parts: the parser (``dockerfile``) and the build context with ``.dockerignore``
(``context``). The builder, which runs containers, is an engine verb: ``sampan.engine.build``."""
