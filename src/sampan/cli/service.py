"""``sampan system service``: serve the Docker Engine API on a unix socket (default ``<runroot>/sampan.sock``)
or, when asked, on TCP (with TLS and client certificates for ``--tlsverify``)."""

from __future__ import annotations

from argparse import Namespace

from sampan.cli.command import arg, command
from sampan.engine.context import Engine


@command("Serve the Docker Engine API (docker CLI, docker-py, compose) on a socket",
         arg("-H", "--host", action="append", default=[],
             help="unix:///path/to/socket (default <runroot>/sampan.sock) or tcp://ADDR:PORT"),
         arg("--group", default="", help="Group that may use the unix socket (mode 0660)"),
         arg("--tls", action="store_true", help="Use TLS on TCP (implied by --tlsverify)"),
         arg("--tlscacert", default="", help="Trust certs signed only by this CA"),
         arg("--tlscert", default="", help="Path to TLS certificate file"),
         arg("--tlskey", default="", help="Path to TLS key file"),
         arg("--tlsverify", action="store_true", help="Use TLS and verify the remote (client certificates)"))
def service(engine: Engine, a: Namespace) -> int:
    from sampan.api.serve import Listen, serve

    hosts = a.host or [f"unix://{engine.layout.runroot / 'sampan.sock'}"]
    listens = [Listen.parse(host) for host in hosts]
    return serve(str(engine.layout.root), str(engine.layout.runroot), listens, group=a.group, tls=a.tls,
                 tlsverify=a.tlsverify, cacert=a.tlscacert, cert=a.tlscert, key=a.tlskey)
