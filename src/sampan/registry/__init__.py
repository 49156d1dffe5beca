"""The distribution client: how sampan talks to OCI/Docker registries (transport, auth, credentials, API v2).

A subsystem: it knows HTTP, TLS, tokens and the registry API, and nothing of the engine or the store. The engine's
``pull`` (and later ``push``) drive it; ``login``/``logout`` use ``credentials`` and ``client.ping``.
"""
