"""Registry credentials in Docker's ``config.json``, shared with the docker CLI.

The file is ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``). Credentials live either in its
``auths`` map (``{"auth": base64("user:password")}``, or an ``identitytoken``), or in a credential helper: the
registry's entry in ``credHelpers``, else the default ``credsStore``. A helper is the program
``docker-credential-<name>`` speaking Docker's protocol: ``get`` (server URL on stdin, JSON
``{"ServerURL", "Username", "Secret"}`` on stdout), ``store`` (that JSON on stdin) and ``erase`` (server URL on
stdin). A username of ``<token>`` means the secret is an identity token. Docker Hub's key is
``https://index.docker.io/v1/``; other registries are keyed by ``host[:port]``, and lookups also match keys
written as URLs (``https://host/v1/``), as the docker CLI does.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.errors import InvalidArgument, NotFound, SampanError

HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com",
                        HUB_KEY, "https://index.docker.io", "index.docker.io/v1/"})
TOKEN_USERNAME = "<token>"
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HELPER_TIMEOUT = 60


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token (``docker login`` to some registries returns one)

    def __repr__(self) -> str:  # never print secrets in a traceback
        return f"Credentials(username={self.username!r})"


def config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def server_key(registry: str) -> str:
    """The key a registry's credentials are stored under: Docker Hub's legacy URL, else ``host[:port]``."""
    if registry in _HUB_NAMES:
        return HUB_KEY
    return hostname_of_key(registry)


def hostname_of_key(key: str) -> str:
    """Docker's ConvertToHostname: ``https://host:5000/v1/`` -> ``host:5000``."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.split("/", 1)[0]


class DockerConfig:
    """One ``config.json`` and the helpers it names."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else config_dir()
        self.path = self.directory / "config.json"

    # ------------------------------------------------------------------ file

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"{self.path}: invalid configuration file: {e}") from None
        if not isinstance(data, dict):
            raise InvalidArgument(f"{self.path}: invalid configuration file: not a JSON object")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        target = Path(os.path.realpath(self.path))
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.rename(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def helper_for(self, key: str, data: dict[str, Any] | None = None) -> str | None:
        data = self.read() if data is None else data
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict):
            name = helpers.get(hostname_of_key(key)) or helpers.get(key)
            if isinstance(name, str) and name:
                return name
        store = data.get("credsStore")
        return store if isinstance(store, str) and store else None

    # ------------------------------------------------------------------ get / store / erase

    def get(self, registry: str) -> Credentials | None:
        """The credentials for a registry (``docker.io``, ``host:5000``), or None if there are none."""
        key = server_key(registry)
        data = self.read()
        helper = self.helper_for(key, data)
        if helper is not None:
            return _helper_get(helper, key)
        entry = _find_auth(data.get("auths"), key)
        if entry is None:
            return None
        return _decode_entry(entry, key, self.path)

    def store(self, registry: str, credentials: Credentials) -> str:
        """Save credentials; returns where they went (the file, or the helper's name)."""
        key = server_key(registry)
        data = self.read()
        auths = data.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise InvalidArgument(f"{self.path}: invalid configuration file: 'auths' is not an object")
        for existing in [k for k in auths if k != key and hostname_of_key(k) == hostname_of_key(key)]:
            del auths[existing]  # an older spelling of the same registry
        helper = self.helper_for(key, data)
        if helper is not None:
            _helper_store(helper, key, credentials)
            auths[key] = {}
            self._write(data)
            return f"docker-credential-{helper}"
        entry: dict[str, str] = {}
        if credentials.identity_token:
            entry["identitytoken"] = credentials.identity_token
            if credentials.username:
                entry["auth"] = base64.b64encode(f"{credentials.username}:".encode()).decode()
        else:
            entry["auth"] = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        auths[key] = entry
        self._write(data)
        return str(self.path)

    def erase(self, registry: str) -> bool:
        """Forget a registry's credentials; False if there were none."""
        key = server_key(registry)
        data = self.read()
        found = False
        helper = self.helper_for(key, data)
        if helper is not None:
            found = _helper_erase(helper, key)
        auths = data.get("auths")
        if isinstance(auths, dict):
            for existing in [k for k in auths if hostname_of_key(k) == hostname_of_key(key) or k == key]:
                del auths[existing]
                found = True
            if found:
                self._write(data)
        return found


def _find_auth(auths: Any, key: str) -> Any:
    if not isinstance(auths, dict):
        return None
    if key in auths:
        return auths[key]
    host = hostname_of_key(key)
    for name, entry in auths.items():
        if isinstance(name, str) and hostname_of_key(name) == host:
            return entry
    return None


def _decode_entry(entry: Any, key: str, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{path}: invalid entry for {key}")
    username = entry.get("username") or ""
    password = entry.get("password") or ""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument(f"{path}: invalid auth for {key}") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise InvalidArgument(f"{path}: invalid auth for {key}: expected base64 of 'user:password'")
    token = entry.get("identitytoken") or ""
    if not (username or password or token):
        return None
    return Credentials(str(username), str(password), str(token))


# ---------------------------------------------------------------------- credential helpers


def _run_helper(helper: str, action: str, data: str) -> subprocess.CompletedProcess[str]:
    if not _HELPER_NAME.fullmatch(helper):
        raise InvalidArgument(f"invalid credential helper name {helper!r}")
    program = f"docker-credential-{helper}"
    try:
        return subprocess.run([program, action], check=False, input=data, capture_output=True, text=True,
                              timeout=_HELPER_TIMEOUT)
    except FileNotFoundError:
        raise NotFound(f"credential helper {program} not found in $PATH") from None
    except subprocess.TimeoutExpired:
        raise SampanError(f"credential helper {program} {action} timed out") from None


def _helper_failure(helper: str, action: str, proc: subprocess.CompletedProcess[str]) -> SampanError:
    message = " ".join((proc.stdout.strip() or proc.stderr.strip()).split())[:300]
    return SampanError(f"error {action} credentials with docker-credential-{helper}: {message or proc.returncode}")


def _not_found(proc: subprocess.CompletedProcess[str]) -> bool:
    return "credentials not found" in (proc.stdout + proc.stderr).lower()


def _helper_get(helper: str, key: str) -> Credentials | None:
    proc = _run_helper(helper, "get", key)
    if proc.returncode != 0:
        if _not_found(proc):
            return None
        raise _helper_failure(helper, "getting", proc)
    try:
        reply = json.loads(proc.stdout)
    except ValueError:
        raise SampanError(f"docker-credential-{helper} get: invalid JSON reply") from None
    if not isinstance(reply, dict):
        raise SampanError(f"docker-credential-{helper} get: invalid reply")
    username, secret = str(reply.get("Username") or ""), str(reply.get("Secret") or "")
    if username == TOKEN_USERNAME:
        return Credentials(identity_token=secret)
    if not (username or secret):
        return None
    return Credentials(username, secret)


def _helper_store(helper: str, key: str, credentials: Credentials) -> None:
    username, secret = credentials.username, credentials.password
    if credentials.identity_token:
        username, secret = TOKEN_USERNAME, credentials.identity_token
    proc = _run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": secret}))
    if proc.returncode != 0:
        raise _helper_failure(helper, "storing", proc)


def _helper_erase(helper: str, key: str) -> bool:
    proc = _run_helper(helper, "erase", key)
    if proc.returncode != 0:
        if _not_found(proc):
            return False
        raise _helper_failure(helper, "erasing", proc)
    return True
