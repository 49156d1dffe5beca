"""Registry authentication: ``WWW-Authenticate`` challenges, Docker's Bearer token flow, and Basic auth.

A registry answers ``401`` with a challenge. ``Basic`` wants the user's credentials on every request. ``Bearer``
(Docker's token auth) names a token server: ``realm`` (its URL), ``service`` and a ``scope``
(``repository:library/busybox:pull``). The client asks the realm for a token, with the credentials as Basic auth
when it has some (anonymously otherwise), or with an identity token as an OAuth2 ``refresh_token`` grant; the
token then goes to the registry as ``Authorization: Bearer``. Tokens are cached per scope set until shortly before
they expire (``expires_in``, at least 60 s by the spec).

Credentials only go where they are meant to: Basic credentials to the registry that asked, over HTTPS or to a
registry the user marked insecure; token requests to the realm the registry named, only over HTTPS (or to a plain
HTTP realm on the registry's own host, or on a host marked insecure). Everything else is asked anonymously.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sampan.errors import RegistryError, Unauthorized
from sampan.registry.credentials import Credentials
from sampan.registry.transport import Transport, origin

MIN_TOKEN_LIFETIME = 60
_TOKEN_MARGIN = 0.1  # refresh when this share of the lifetime is left
CredentialLookup = Callable[[], "Credentials | None"]


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (RFC 7235: several challenges may share one header)."""
    challenges: list[Challenge] = []
    for value in values:
        challenges.extend(_parse_header(value))
    return challenges


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SEPARATORS = re.compile(r"[\s,]*")
_SCHEME = re.compile(_TOKEN)
_PARAM = re.compile(rf'({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))')
_TOKEN68 = re.compile(r"\s+[A-Za-z0-9\-._~+/]+=*\s*(?=,|$)")
_ESCAPE = re.compile(r"\\(.)")


def _parse_header(text: str) -> list[Challenge]:
    out: list[Challenge] = []
    i = 0
    while True:
        i = _SEPARATORS.match(text, i).end()  # type: ignore[union-attr]
        if i >= len(text):
            return out
        param = _PARAM.match(text, i)
        if param is not None and out:
            quoted, plain = param.group(2), param.group(3)
            out[-1].params[param.group(1).lower()] = _ESCAPE.sub(r"\1", quoted) if quoted is not None else plain
            i = param.end()
            continue
        scheme = _SCHEME.match(text, i)
        if scheme is None:
            i += 1
            continue
        out.append(Challenge(scheme.group(0).lower(), {}))
        i = scheme.end()
        if (token68 := _TOKEN68.match(text, i)) is not None and _PARAM.match(text, i + 1) is None:
            i = token68.end()  # ``Negotiate abc==``: a token68 carries nothing we use


@dataclass
class _Token:
    value: str
    expires: float


class Authorizer:
    """The authorization state for one registry: its challenge, its credentials and the tokens it granted."""

    def __init__(self, transport: Transport, registry_url: str, credentials: CredentialLookup | None = None,
                 registry_name: str = "") -> None:
        self.transport = transport
        self.registry_url = registry_url
        self.registry_name = registry_name or urllib.parse.urlsplit(registry_url).netloc
        self._credentials = credentials
        self._credentials_loaded = False
        self._creds: Credentials | None = None
        self.challenge: Challenge | None = None
        self._tokens: dict[frozenset[str], _Token] = {}
        self._lock = threading.Lock()
        self._fetch_locks: dict[frozenset[str], threading.Lock] = {}

    # ------------------------------------------------------------------ credentials

    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._credentials_loaded:
                self._creds = self._credentials() if self._credentials is not None else None
                self._credentials_loaded = True
            return self._creds

    def _may_send_to(self, url: str) -> bool:
        """Credentials travel over HTTPS, or in the clear only to the registry's own origin or an insecure host."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            return True
        return origin(url) == origin(self.registry_url) or not self.transport.verifies(parts.netloc)

    # ------------------------------------------------------------------ headers

    def set_challenge(self, challenges: list[Challenge]) -> None:
        for wanted in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == wanted:
                    self.challenge = challenge
                    return
        if challenges:
            raise RegistryError(f"{self.registry_name}: unsupported authentication scheme "
                                f"{challenges[0].scheme!r}")

    def authorization(self, scopes: Iterable[str]) -> str | None:
        """The ``Authorization`` header value for a request needing ``scopes`` (None: send none)."""
        challenge = self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials()
            if creds is None or not self._may_send_to(self.registry_url):
                return None
            raw = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return "Bearer " + self.token(frozenset(scopes))

    def invalidate(self, scopes: Iterable[str]) -> None:
        with self._lock:
            self._tokens.pop(frozenset(scopes), None)

    # ------------------------------------------------------------------ tokens

    def token(self, scopes: frozenset[str]) -> str:
        with self._lock:
            cached = self._tokens.get(scopes)
            if cached is not None and cached.expires > time.monotonic():
                return cached.value
            fetch_lock = self._fetch_locks.setdefault(scopes, threading.Lock())
        with fetch_lock:  # parallel downloads wanting the same scope share one token request
            with self._lock:
                cached = self._tokens.get(scopes)
                if cached is not None and cached.expires > time.monotonic():
                    return cached.value
            token = self._fetch_token(scopes)
            with self._lock:
                self._tokens[scopes] = token
            return token.value

    def _fetch_token(self, scopes: frozenset[str]) -> _Token:
        assert self.challenge is not None
        params = self.challenge.params
        realm = params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"{self.registry_name}: invalid token realm {realm[:200]!r}")
        all_scopes = sorted(set(scopes) | ({params["scope"]} if params.get("scope") else set()))
        creds = self.credentials() if self._may_send_to(realm) else None
        service = params.get("service", "")
        if creds is not None and creds.identity_token:
            response = self._oauth(realm, service, all_scopes, creds.identity_token)
        else:
            query = ([("service", service)] if service else []) + [("scope", s) for s in all_scopes]
            if creds is not None and creds.username:
                query.append(("account", creds.username))
            url = realm + ("&" if parts.query else "?") + urllib.parse.urlencode(query) if query else realm
            headers = {}
            if creds is not None and (creds.username or creds.password):
                raw = f"{creds.username}:{creds.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
            response = self.transport.request("GET", url, headers=headers)
        body = response.body(1 << 20)
        if response.status in (401, 403):
            who = "incorrect username or password" if creds is not None else "authentication required"
            raise Unauthorized(f"{self.registry_name}: unauthorized: {who}")
        if response.status != 200:
            raise RegistryError(f"{self.registry_name}: token server {parts.netloc} answered "
                                f"{response.status}: {_snippet(body)}")
        try:
            reply = json.loads(body)
        except ValueError:
            raise RegistryError(f"{self.registry_name}: token server {parts.netloc} sent invalid JSON") from None
        token = (reply.get("token") or reply.get("access_token")) if isinstance(reply, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.registry_name}: token server {parts.netloc} sent no token")
        lifetime = reply.get("expires_in")
        if not isinstance(lifetime, int | float) or lifetime < MIN_TOKEN_LIFETIME:
            lifetime = MIN_TOKEN_LIFETIME
        return _Token(token, time.monotonic() + lifetime * (1 - _TOKEN_MARGIN))

    def _oauth(self, realm: str, service: str, scopes: list[str], refresh_token: str) -> object:
        form = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token,
                                       "service": service, "scope": " ".join(scopes),
                                       "client_id": "sampan"})
        return self.transport.request("POST", realm, body=form.encode(),
                                      headers={"Content-Type": "application/x-www-form-urlencoded"},
                                      retry=True)


def _snippet(body: bytes) -> str:
    return " ".join(body[:200].decode(errors="replace").split()) or "(empty)"
