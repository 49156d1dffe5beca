"""HTTP(S) to registries: TLS trust per registry, proxies, retries with backoff, and redirects that drop credentials.

One ``Transport`` is shared by every request of an operation, so connections are pooled and reused across the
parallel blob downloads. TLS trusts the system CAs plus the ``*.crt`` files of the registry's certs.d directories,
and presents a client certificate (``*.cert`` + ``*.key``) when one is there; registries marked insecure get TLS
without verification (the client falls back to plain HTTP for them). Proxies come from ``HTTPS_PROXY``,
``HTTP_PROXY`` and ``NO_PROXY`` (loopback is never proxied, as in Go). Connection failures, 429 and 5xx answers
are retried with exponential backoff for requests that can be repeated. Redirects are followed by hand, so that
the ``Authorization`` header only ever goes to the origin it was meant for: a registry sending a blob download to
object storage does not send its token there.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, SSLError

from sampan import __version__
from sampan.errors import RegistryError
from sampan.registry.config import RegistryConfig

USER_AGENT = f"sampan/{__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 10
MAX_BODY = 8 << 20  # responses read whole (manifests, tokens, errors); blobs are streamed
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_MAX_RETRY_AFTER = 10.0


def origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) with the default port made explicit: what "the same server" means for credentials."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return parts.scheme, f"{host}:{port}"


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


class _TooLarge(RegistryError):
    pass


class Response:
    """A response and the URL that produced it (after redirects): streamed, or already read with a size cap."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, url: str, method: str) -> None:
        self.raw = raw
        self.url = url
        self.method = method
        self._data: bytes | None = None

    @property
    def status(self) -> int:
        return self.raw.status

    @property
    def headers(self) -> Any:
        return self.raw.headers

    def header(self, name: str) -> str:
        return self.raw.headers.get(name, "")

    def read(self, amount: int) -> bytes:
        return self.raw.read(amount)

    def body(self, limit: int = MAX_BODY) -> bytes:
        """The whole body, refusing more than ``limit`` bytes (servers are untrusted)."""
        if self._data is None:
            self._data = self._read_all(limit)
        if len(self._data) > limit:
            raise _TooLarge(f"{self.method} {self.url}: response larger than {limit} bytes")
        return self._data

    def _read_all(self, limit: int) -> bytes:
        chunks, total = [], 0
        try:
            while chunk := self.raw.read(min(1 << 16, limit + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    self.close(reuse=False)
                    raise _TooLarge(f"{self.method} {self.url}: response larger than {limit} bytes")
        except _TooLarge:
            raise
        except (HTTPError, OSError) as e:
            self.close(reuse=False)
            raise RegistryError(f"{self.method} {self.url}: {_reason(e)}") from None
        self.close()
        return b"".join(chunks)

    def close(self, reuse: bool = True) -> None:
        """Give the connection back; one left mid-body is closed rather than reused."""
        if reuse and self._data is None:
            try:
                self.raw.drain_conn()
            except (HTTPError, OSError):
                reuse = False
        if not reuse:
            self.raw.close()
        self.raw.release_conn()


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "no such host"
    return " ".join(text.split())[:300]


class Transport:
    """Pooled HTTP(S) for every registry an operation talks to."""

    def __init__(self, config: RegistryConfig | None = None, *, attempts: int = 4, backoff: float = 0.25,
                 connect_timeout: float = 15.0, read_timeout: float = 60.0, pool_size: int = 8) -> None:
        self.config = config if config is not None else RegistryConfig.load()
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.pool_size = pool_size
        self._pools: dict[tuple[Any, ...], urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self._proxies = {k: v for k, v in urllib.request.getproxies_environment().items()
                         if k in ("http", "https", "no")}

    # ------------------------------------------------------------------ TLS and pools

    def verifies(self, host: str) -> bool:
        """Whether TLS to ``host[:port]`` is verified (registries marked insecure are not)."""
        return not self.config.is_insecure(host)

    def ssl_context(self, host: str) -> ssl.SSLContext:
        """System CAs plus the registry's certs.d ``*.crt``; its client certificate if it has one."""
        verify = self.verifies(host)
        if verify:
            context = ssl.create_default_context()
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        for directory in self.config.cert_dirs(host):
            for entry in sorted(directory.iterdir()):
                try:
                    if entry.suffix == ".crt" and verify:
                        context.load_verify_locations(cafile=str(entry))
                    elif entry.suffix == ".cert":
                        key = entry.with_suffix(".key")
                        if not key.exists():
                            raise RegistryError(f"missing key {key.name} for client certificate {entry}")
                        context.load_cert_chain(str(entry), str(key))
                except (OSError, ssl.SSLError) as e:
                    raise RegistryError(f"{host}: cannot load {entry}: {e}") from None
            for key in directory.glob("*.key"):
                if not key.with_suffix(".cert").exists():
                    raise RegistryError(f"missing client certificate {key.stem}.cert for key {key}")
        return context

    def _proxy_for(self, scheme: str, hostname: str) -> str | None:
        if _is_loopback(hostname) or not self._proxies.get(scheme):
            return None
        if urllib.request.proxy_bypass_environment(hostname, self._proxies):
            return None
        return self._proxies[scheme]

    def _pool(self, url: str) -> urllib3.PoolManager:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        proxy = self._proxy_for(parts.scheme, parts.hostname or "")
        key = (parts.scheme, host, proxy)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                return pool
            options: dict[str, Any] = {"maxsize": self.pool_size, "block": False, "retries": False,
                                       "timeout": self.timeout}
            if parts.scheme == "https":
                options["ssl_context"] = self.ssl_context(host)
                if not self.verifies(host):
                    options["assert_hostname"] = False
            if proxy:
                pool = urllib3.ProxyManager(proxy, num_pools=4, **options)
            else:
                pool = urllib3.PoolManager(num_pools=4, **options)
            self._pools[key] = pool
            return pool

    # ------------------------------------------------------------------ requests

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                body: bytes | Any = None, stream: bool = False, follow: bool = True,
                retry: bool | None = None, decode: bool = True) -> Response:
        """One request, retried on connection errors/429/5xx, redirects followed without foreign credentials.

        ``stream=False`` reads the body before returning (``Response.body`` then costs nothing); a streamed
        response must be read and closed by the caller. ``decode=False`` keeps a Content-Encoding as sent
        (blobs are hashed exactly as stored).
        """
        headers = {"User-Agent": USER_AGENT, **(headers or {})}
        auth_origin = origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            if "Authorization" in headers and origin(url) != auth_origin:
                del headers["Authorization"]
            response = self._send(method, url, headers, body, stream, retry, decode)
            if not follow or response.status not in (301, 302, 303, 307, 308):
                return response
            location = response.header("Location")
            response.close()
            if not location:
                raise RegistryError(f"{method} {url}: redirect without a Location")
            target = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
                raise RegistryError(f"{method} {url}: redirect to an unsupported URL {target[:200]!r}")
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = "GET", None
            url = target
        raise RegistryError(f"{method} {url}: too many redirects")

    def _send(self, method: str, url: str, headers: dict[str, str], body: Any, stream: bool,
              retry: bool | None, decode: bool) -> Response:
        repeatable = body is None or isinstance(body, bytes | bytearray)
        if retry is None:
            retry = method in _IDEMPOTENT and repeatable
        attempts = self.attempts if retry else 1
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            try:
                raw = self._pool(url).urlopen(method, url, headers=headers, body=body, redirect=False,
                                              preload_content=False, decode_content=decode)
            except SSLError as e:
                host = urllib.parse.urlsplit(url).netloc
                raise RegistryError(f"{method} {url}: TLS failed: {_reason(e)} (a registry with a private CA "
                                    f"needs it in {self.config.directory}/certs.d/{host}/ca.crt)") from None
            except (HTTPError, OSError) as e:
                if last:
                    raise RegistryError(f"{method} {url}: {_reason(e)}") from None
                time.sleep(self.backoff * 2 ** attempt)
                continue
            response = Response(raw, url, method)
            if response.status in RETRY_STATUSES and not last:
                delay = _retry_after(response.header("Retry-After"), self.backoff * 2 ** attempt)
                response.close()
                time.sleep(delay)
                continue
            if not stream:
                try:
                    response.body()
                except RegistryError as e:
                    if last or isinstance(e, _TooLarge):
                        raise
                    time.sleep(self.backoff * 2 ** attempt)
                    continue
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.clear()
            self._pools.clear()


def _retry_after(value: str, default: float) -> float:
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        return default
