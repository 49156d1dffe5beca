"""The Registry HTTP API v2 (OCI distribution spec): ping, manifests, blobs, tags, and the upload primitives.

One ``RegistryClient`` per registry endpoint (a host, or a mirror URL). ``ping`` finds the scheme (HTTPS; plain
HTTP only for registries marked insecure) and the auth challenge, so later requests carry a token from the start.
Every request names the scopes it needs; a ``401`` refreshes the token once before giving up.

Nothing returned here is trusted: manifests fetched by digest are verified against it, manifests fetched by tag
against ``Docker-Content-Digest`` when the registry sends one, small blobs against their digest. Large blobs are
streamed through ``BlobReader``, which reads exactly the descriptor's size, resumes a dropped connection with an
HTTP ``Range`` request, and leaves verification to the content store that hashes what it writes.

Errors are one line that names the registry and the object: ``manifest for 127.0.0.1:5000/x:nope not found:
manifest unknown``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, Self

from sampan.errors import CorruptContent, NotFound, RegistryError, SampanError, Unauthorized, Unsupported
from sampan.image import digest as _digest
from sampan.image import mediatypes as mt
from sampan.image.manifest import MAX_MANIFEST_BYTES
from sampan.registry.auth import Authorizer, CredentialLookup, parse_challenges
from sampan.registry.config import RegistryConfig
from sampan.registry.transport import Response, Transport, origin

MANIFEST_TYPES = (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)
MAX_SMALL_BLOB = 8 << 20  # configs
READ_SIZE = 1 << 20
RESUME_ATTEMPTS = 5
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: str


class RegistryClient:
    """The API of one registry endpoint.

    ``host`` is ``host[:port]`` (``registry-1.docker.io``, ``127.0.0.1:5000``); ``base_url`` pins the endpoint
    (a mirror: ``https://mirror.example/prefix``), else ``ping`` chooses https or, for insecure hosts, http.
    ``name`` is how the registry is named in messages (``docker.io``). ``credentials`` is called at most once,
    when the registry first asks for authentication.
    """

    def __init__(self, host: str, *, transport: Transport | None = None, config: RegistryConfig | None = None,
                 credentials: CredentialLookup | None = None, name: str = "", base_url: str = "") -> None:
        self.host = host
        self.name = name or host
        self.transport = transport if transport is not None else Transport(config)
        self._credentials = credentials
        self._base = base_url.rstrip("/")
        self._auth: Authorizer | None = None

    # ------------------------------------------------------------------ endpoint and auth

    @property
    def base_url(self) -> str:
        self.ping()
        return self._base

    def ping(self) -> None:
        """Find the endpoint and its auth challenge (``GET /v2/``), once."""
        if self._auth is not None:
            return
        candidates = [self._base] if self._base else [f"https://{self.host}"]
        if not self._base and not self.transport.verifies(self.host):
            candidates.append(f"http://{self.host}")
        error: SampanError | None = None
        for base in candidates:
            try:
                response = self.transport.request("GET", base + "/v2/", retry=False)
            except RegistryError as e:
                error = error or e
                continue
            if response.status not in (200, 401):
                if response.status == 400 and base.startswith("https://") and len(candidates) > 1:
                    continue  # "client sent an HTTP request to an HTTPS server" and similar
                raise self._error(response, f"registry {self.name}")
            self._base = base
            self._auth = Authorizer(self.transport, base, self._credentials, self.name)
            if response.status == 401:
                self._auth.set_challenge(parse_challenges(response.headers.getlist("WWW-Authenticate")))
            return
        assert error is not None
        raise error

    def login(self) -> None:
        """Check that the credentials are accepted (a token without scope, or ``/v2/`` with Basic auth)."""
        self.ping()
        assert self._auth is not None
        if self._auth.challenge is None:
            return  # the registry needs no authentication
        if self._auth.credentials() is None:
            raise Unauthorized(f"{self.name}: unauthorized: no credentials")
        response = self._request("GET", "/v2/", ())
        if response.status != 200:
            raise self._error(response, f"registry {self.name}")

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def _request(self, method: str, path: str, scopes: Iterable[str], *, headers: dict[str, str] | None = None,
                 body: Any = None, stream: bool = False, retry: bool | None = None, decode: bool = True,
                 follow: bool = True) -> Response:
        self.ping()
        assert self._auth is not None
        scopes = tuple(scopes)
        url = self._url(path)
        for attempt in range(2):
            sent = dict(headers or {})
            if origin(url) == origin(self._base) and (value := self._auth.authorization(scopes)):
                sent["Authorization"] = value
            response = self.transport.request(method, url, headers=sent, body=body, stream=stream, retry=retry,
                                              decode=decode, follow=follow)
            if response.status != 401 or attempt == 1 or not _rewindable(body):
                return response
            challenges = parse_challenges(response.headers.getlist("WWW-Authenticate"))
            response.close()
            had = self._auth.challenge
            self._auth.invalidate(scopes)
            self._auth.set_challenge(challenges)
            if had is not None and had.scheme == "basic" and "Authorization" in sent:
                break  # the credentials themselves were refused
        return response

    # ------------------------------------------------------------------ errors

    def _error(self, response: Response, what: str) -> SampanError:
        """One line for a failed answer: Docker's wording where it has one."""
        body = response.body() if response.raw is not None else b""
        ctype = response.header("Content-Type").split(";")[0].strip().lower()
        code, message = _registry_error(body)
        status = response.status
        if ctype == "text/html" or body.lstrip()[:1] == b"<":
            return RegistryError(f"{what}: {self.name} answered {status} with an HTML page, not the registry API")
        if status == 401:
            return Unauthorized(f"{what}: unauthorized: {message or 'authentication required'}")
        if status == 403 or code == "DENIED":
            return Unauthorized(f"{what}: denied: {message or 'requested access to the resource is denied'}")
        if status == 404 or code.endswith("_UNKNOWN"):
            return NotFound(f"{what} not found: {message or code.lower().replace('_', ' ') or 'not found'}")
        if status == 429 or code == "TOOMANYREQUESTS":
            return RegistryError(f"{what}: toomanyrequests: {message or 'too many requests'}")
        if code in ("DIGEST_INVALID", "SIZE_INVALID", "MANIFEST_BLOB_UNKNOWN"):
            return CorruptContent(f"{what}: {code.lower().replace('_', ' ')}: {message}")
        if code in ("UNSUPPORTED", "MANIFEST_INVALID", "BLOB_UPLOAD_INVALID", "NAME_INVALID"):
            return Unsupported(f"{what}: {code.lower().replace('_', ' ')}: {message}")
        detail = f"{code.lower().replace('_', ' ')}: {message}" if code else _snippet(body)
        return RegistryError(f"{what}: {self.name} answered {status}: {detail}")

    # ------------------------------------------------------------------ manifests

    def get_manifest(self, repo: str, reference: str, accept: Iterable[str] = MANIFEST_TYPES) -> FetchedManifest:
        """A manifest or index by tag or digest, verified; its media type from the response."""
        what = f"manifest for {self._object(repo, reference)}"
        response = self._request("GET", f"/v2/{repo}/manifests/{reference}", (pull_scope(repo),),
                                 headers={"Accept": ", ".join(accept)})
        if response.status != 200:
            raise self._error(response, what)
        data = response.body(MAX_MANIFEST_BYTES)
        ctype = response.header("Content-Type").split(";")[0].strip()
        if ctype == "text/html" or data.lstrip()[:1] == b"<":
            raise RegistryError(f"{what}: {self.name} answered with an HTML page, not a manifest")
        digest = _digest.sha256_bytes(data)
        expected = reference if _digest.is_digest(reference) else response.header("Docker-Content-Digest")
        if expected and expected.startswith("sha256:") and expected != digest:
            raise CorruptContent(f"{what}: digest mismatch: expected {expected}, got {digest}")
        media_type = ctype if ctype in MANIFEST_TYPES else _declared_media_type(data)
        return FetchedManifest(data, media_type, digest)

    def head_manifest(self, repo: str, reference: str) -> tuple[str, str, int] | None:
        """(digest, media type, size) of a manifest without fetching it, or None if it does not exist."""
        response = self._request("HEAD", f"/v2/{repo}/manifests/{reference}", (pull_scope(repo),),
                                 headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status == 404:
            return None
        if response.status != 200:
            raise self._error(response, f"manifest for {self._object(repo, reference)}")
        return (response.header("Docker-Content-Digest"), response.header("Content-Type").split(";")[0].strip(),
                int(response.header("Content-Length") or 0))

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """Upload a manifest under a tag or its digest; returns its digest."""
        digest = _digest.sha256_bytes(data)
        response = self._request("PUT", f"/v2/{repo}/manifests/{reference}", (push_scope(repo),),
                                 headers={"Content-Type": media_type}, body=data)
        if response.status not in (200, 201, 202):
            raise self._error(response, f"manifest for {self._object(repo, reference)}")
        returned = response.header("Docker-Content-Digest")
        if returned and returned != digest:
            raise CorruptContent(f"{self._object(repo, reference)}: the registry stored the manifest as "
                                 f"{returned}, expected {digest}")
        return digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        response = self._request("DELETE", f"/v2/{repo}/manifests/{digest}", (push_scope(repo),))
        if response.status not in (200, 202):
            raise self._error(response, f"manifest {self._object(repo, digest)}")

    # ------------------------------------------------------------------ blobs

    def blob_size(self, repo: str, digest: str, scopes: Iterable[str] | None = None) -> int | None:
        """HEAD a blob: its size, or None if the registry does not have it."""
        response = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes or (pull_scope(repo),))
        if response.status == 404:
            return None
        if response.status != 200:
            raise self._error(response, f"blob {self._object(repo, digest)}")
        try:
            return int(response.header("Content-Length"))
        except ValueError:
            return 0

    def fetch_blob(self, repo: str, digest: str, size: int | None = None, limit: int = MAX_SMALL_BLOB) -> bytes:
        """A small blob (an image config), verified against its digest."""
        what = f"blob {self._object(repo, digest)}"
        if size is not None and size > limit:
            raise CorruptContent(f"{what}: too large ({size} bytes)")
        response = self._request("GET", f"/v2/{repo}/blobs/{digest}", (pull_scope(repo),), decode=False)
        if response.status != 200:
            raise self._error(response, what)
        data = response.body(limit)
        if size is not None and len(data) != size:
            raise CorruptContent(f"{what}: size mismatch: expected {size} bytes, got {len(data)}")
        if _digest.sha256_bytes(data) != digest:
            raise CorruptContent(f"{what}: digest mismatch: got {_digest.sha256_bytes(data)}")
        return data

    def open_blob(self, repo: str, digest: str, size: int,
                  progress: Callable[[int], None] | None = None) -> BlobReader:
        """Stream a blob of a known size; the caller verifies its digest (the content store's writer does)."""
        return BlobReader(self, repo, digest, size, progress)

    # ------------------------------------------------------------------ uploads (push)

    def mount_blob(self, repo: str, digest: str, source_repo: str) -> str | None:
        """Cross-repository mount. None when mounted; else the upload URL the registry opened instead."""
        query = urllib.parse.urlencode({"mount": digest, "from": source_repo})
        response = self._request("POST", f"/v2/{repo}/blobs/uploads/?{query}",
                                 (push_scope(repo), pull_scope(source_repo)), body=b"", retry=True)
        if response.status == 201:
            return None
        if response.status == 202:
            return self._location(response)
        raise self._error(response, f"blob mount {self._object(repo, digest)}")

    def start_upload(self, repo: str) -> str:
        response = self._request("POST", f"/v2/{repo}/blobs/uploads/", (push_scope(repo),), body=b"", retry=True)
        if response.status != 202:
            raise self._error(response, f"blob upload to {self.name}/{repo}")
        return self._location(response)

    def upload_blob(self, repo: str, digest: str, size: int, source: BinaryIO | bytes, *,
                    location: str | None = None, chunk_size: int | None = None) -> None:
        """Upload a blob: monolithic (one PUT), or chunked (PATCHes, then PUT) when ``chunk_size`` is given."""
        what = f"blob upload {self._object(repo, digest)}"
        location = location or self.start_upload(repo)
        scopes = (push_scope(repo),)
        if chunk_size and not isinstance(source, bytes):
            offset = 0
            while offset < size:
                chunk = source.read(min(chunk_size, size - offset))
                if not chunk:
                    raise CorruptContent(f"{what}: source ended at {offset} of {size} bytes")
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                           "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                response = self._request("PATCH", location, scopes, headers=headers, body=chunk, retry=False)
                if response.status != 202:
                    raise self._error(response, what)
                location = self._location(response)
                offset += len(chunk)
            body: Any = b""
        else:
            body = source
        url = location + ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Length": str(0 if chunk_size and not isinstance(source, bytes) else size)}
        response = self._request("PUT", url, scopes, headers=headers, body=body, retry=isinstance(body, bytes))
        if response.status not in (201, 204):
            raise self._error(response, what)

    def _location(self, response: Response) -> str:
        location = response.header("Location")
        if not location:
            raise RegistryError(f"{self.name}: upload answer without a Location")
        return urllib.parse.urljoin(response.url, location)

    # ------------------------------------------------------------------ tags

    def list_tags(self, repo: str, page_size: int = 1000) -> list[str]:
        tags: list[str] = []
        path = f"/v2/{repo}/tags/list?n={page_size}"
        for _ in range(10_000):
            response = self._request("GET", path, (pull_scope(repo),))
            if response.status != 200:
                raise self._error(response, f"tags of {self.name}/{repo}")
            try:
                reply = json.loads(response.body())
            except ValueError:
                raise CorruptContent(f"tags of {self.name}/{repo}: invalid JSON") from None
            page = reply.get("tags") if isinstance(reply, dict) else None
            if page is not None and (not isinstance(page, list) or not all(isinstance(t, str) for t in page)):
                raise CorruptContent(f"tags of {self.name}/{repo}: 'tags' must be a list of strings")
            tags.extend(page or [])
            match = _LINK_NEXT.search(response.header("Link"))
            if not match:
                return tags
            path = urllib.parse.urljoin(response.url, match.group(1))
            if origin(path) != origin(self._base):
                raise RegistryError(f"tags of {self.name}/{repo}: pagination link to another host")
        raise RegistryError(f"tags of {self.name}/{repo}: too many pages")

    # ------------------------------------------------------------------ helpers

    def _object(self, repo: str, reference: str) -> str:
        sep = "@" if _digest.is_digest(reference) or ":" in reference else ":"
        return f"{self.name}/{repo}{sep}{reference}"

    def close(self) -> None:
        self.transport.close()


class BlobReader:
    """A blob's bytes, read exactly up to its size; a dropped connection resumes where it stopped (HTTP Range)."""

    def __init__(self, client: RegistryClient, repo: str, digest: str, size: int,
                 progress: Callable[[int], None] | None = None) -> None:
        self.client, self.repo, self.digest, self.size = client, repo, digest, size
        self.offset = self._start = 0  # _start: where this process began (past an earlier process's bytes)
        self.resumed = 0
        self._progress = progress
        self._response: Response | None = None
        self._failures = 0
        self._what = f"blob {client._object(repo, digest)}"

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        response = self.client._request("GET", f"/v2/{self.repo}/blobs/{self.digest}",
                                        (pull_scope(self.repo),), headers=headers, stream=True, decode=False)
        if response.status == 206 and self.offset:
            start = _content_range_start(response.header("Content-Range"))
            if start != self.offset:
                response.close(reuse=False)
                raise RegistryError(f"{self._what}: the registry resumed at byte {start}, not {self.offset}")
        elif response.status == 200:
            skip = self.offset  # no Range support: the same bytes again, skip what we have
            while skip:
                chunk = response.read(min(READ_SIZE, skip))
                if not chunk:
                    response.close(reuse=False)
                    raise RegistryError(f"{self._what}: connection closed while resuming")
                skip -= len(chunk)
        else:
            raise self.client._error(response, self._what)
        self._response = response

    def seek(self, offset: int) -> int:
        """Start at ``offset`` (before the first read): the bytes before it are already stored from an
        earlier, interrupted download; the registry is asked for the rest with ``Range``."""
        if self._response is not None or self.offset:
            raise ValueError("BlobReader.seek is only possible before reading")
        if not 0 <= offset <= self.size:
            raise ValueError(f"offset {offset} outside the blob's {self.size} bytes")
        self.offset = self._start = offset
        if offset and self._progress is not None:
            self._progress(offset)
        return offset

    def read(self, amount: int = READ_SIZE) -> bytes:
        from urllib3.exceptions import HTTPError

        if amount < 0:
            amount = READ_SIZE
        while self.offset < self.size:
            want = min(amount, self.size - self.offset)
            try:
                if self._response is None:
                    self._open()
                assert self._response is not None
                chunk = self._response.read(want)
            except (HTTPError, OSError, RegistryError) as e:
                self._retry(e)
                continue
            if not chunk:
                self._retry(None)
                continue
            self.offset += len(chunk)
            self._failures = 0
            if self._progress is not None:
                self._progress(len(chunk))
            if self.offset == self.size:
                self._finish()
            return chunk
        return b""

    def _retry(self, error: BaseException | None) -> None:
        if self._response is not None:
            self._response.close(reuse=False)
            self._response = None
        self._failures += 1
        if isinstance(error, RegistryError) and self.offset == self._start and self.resumed == 0:
            raise error
        if self._failures > RESUME_ATTEMPTS:
            reason = " ".join(str(error).split())[:200] if error else "connection closed early"
            raise RegistryError(f"{self._what}: download failed at byte {self.offset} of {self.size}: "
                                f"{reason}") from None
        self.resumed += 1
        time.sleep(min(0.1 * 2 ** (self._failures - 1), 2.0))

    def _finish(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            at_end = response.raw.length_remaining in (0, None) and not response.raw.chunked
            response.close(reuse=at_end)

    def close(self) -> None:
        if self._response is not None:
            self._response.close(reuse=False)
            self._response = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _content_range_start(value: str) -> int | None:
    match = re.match(r"bytes\s+(\d+)-", value.strip())
    return int(match.group(1)) if match else None


def _rewindable(body: Any) -> bool:
    return body is None or isinstance(body, bytes | bytearray)


def _registry_error(body: bytes) -> tuple[str, str]:
    """(code, message) of the first error in a registry's ``{"errors": [...]}`` body."""
    try:
        reply = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", ""
    errors = reply.get("errors") if isinstance(reply, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return "", ""
    code, message = errors[0].get("code"), errors[0].get("message")
    return (code if isinstance(code, str) else "").upper()[:50], " ".join(str(message or "").split())[:300]


def _declared_media_type(data: bytes) -> str:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return ""
    value = obj.get("mediaType") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else ""


def _snippet(body: bytes) -> str:
    return " ".join(body[:200].decode(errors="replace").split()) or "(empty body)"
