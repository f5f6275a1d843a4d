"""Users, password hashes, tags and per-vhost permissions: who may log in and do what.

Invariants:
- Password hashes use RabbitMQ's ``rabbit_password_hashing_sha256`` layout: 4 random salt
  bytes followed by sha256(salt + password); definitions carry them base64-encoded, so hashes
  exported here import into RabbitMQ and back unchanged.
- A permission is three regular expressions (configure, write, read) matched with ``re.search``
  against a resource name, as Erlang's ``re:run`` does; the empty pattern means ``^$`` (deny).
- Permission checks on a resource named ``""`` of kind exchange use ``amq.default``.
- Every change that can alter an authorization answer bumps ``generation`` and calls
  ``invalidate()`` on every watcher (the per-connection caches of ``access.Authorizer``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import weakref
from dataclasses import dataclass, field
from typing import Protocol

from .jsondoc import JSONObject

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
DIGESTS = {"rabbit_password_hashing_sha256": "sha256",
           "rabbit_password_hashing_sha512": "sha512",
           "rabbit_password_hashing_md5": "md5"}
PERMISSIONS = ("configure", "write", "read")


def hash_password(password: str, salt: bytes | None = None,
                  algorithm: str = HASHING_ALGORITHM) -> bytes:
    salt = salt if salt is not None else os.urandom(4)
    return salt + hashlib.new(DIGESTS[algorithm], salt + password.encode()).digest()


def check_password(stored: bytes, password: str, algorithm: str = HASHING_ALGORITHM) -> bool:
    if len(stored) < 5 or algorithm not in DIGESTS:
        return False
    return hmac.compare_digest(stored, hash_password(password, stored[:4], algorithm))


def encode_hash(stored: bytes) -> str:
    return base64.b64encode(stored).decode()


def decode_hash(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (what rabbit_net:is_loopback says)."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host == "localhost"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


@dataclass
class User:
    name: str
    password_hash: bytes = b""
    tags: list[str] = field(default_factory=list)
    algorithm: str = HASHING_ALGORITHM
    limits: dict[str, int] = field(default_factory=dict)  # max-connections, max-channels

    def as_json(self) -> JSONObject:
        return {"name": self.name, "password_hash": encode_hash(self.password_hash),
                "hashing_algorithm": self.algorithm, "tags": list(self.tags),
                "limits": dict(self.limits)}


@dataclass
class Permission:
    configure: str = ".*"
    write: str = ".*"
    read: str = ".*"
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False,
                                                  compare=False)

    def allows(self, what: str, name: str) -> bool:
        pattern = self._compiled.get(what)
        if pattern is None:
            source = getattr(self, what) or "^$"
            pattern = self._compiled[what] = re.compile(source)
        return pattern.search(name) is not None


class AuthWatcher(Protocol):
    """Who caches authorization answers (a connection's authorizer, the server)."""

    def invalidate(self) -> None: ...


class UnknownUser(KeyError):
    """The named user does not exist."""


class AuthStore:
    """The internal auth backend: users, permissions, loopback-only users."""

    def __init__(self, loopback_users: tuple[str, ...] = ("guest",)) -> None:
        self.users: dict[str, User] = {}
        self.permissions: dict[tuple[str, str], Permission] = {}
        self.topic_permissions: list[JSONObject] = []
        self.loopback_users = set(loopback_users)
        self.generation = 0
        self._watchers: weakref.WeakSet[AuthWatcher] = weakref.WeakSet()

    def watch(self, watcher: AuthWatcher) -> None:
        """``watcher.invalidate()`` is called whenever an authorization answer may change."""
        self._watchers.add(watcher)

    def _changed(self) -> None:
        self.generation += 1
        for watcher in list(self._watchers):
            watcher.invalidate()

    # ---- users -------------------------------------------------------------------------
    def add_user(self, name: str, password: str | None = None, tags: list[str] | None = None,
                 password_hash: bytes | None = None,
                 algorithm: str = HASHING_ALGORITHM) -> User:
        if password_hash is None:
            password_hash = hash_password(password, None, algorithm) if password else b""
        old = self.users.get(name)
        user = User(name, password_hash, list(tags or []), algorithm,
                    dict(old.limits) if old is not None else {})
        self.users[name] = user
        self._changed()
        return user

    def delete_user(self, name: str) -> None:
        if self.users.pop(name, None) is None:
            raise UnknownUser(name)
        for key in [k for k in self.permissions if k[0] == name]:
            del self.permissions[key]
        self.topic_permissions = [p for p in self.topic_permissions if p.get("user") != name]
        self._changed()

    def user(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise UnknownUser(name)
        return user

    def change_password(self, name: str, password: str) -> None:
        user = self.user(name)
        user.password_hash = hash_password(password, None, user.algorithm)

    def set_tags(self, name: str, tags: list[str]) -> None:
        self.user(name).tags = [t for t in tags if t]

    def authenticate(self, name: str, password: str) -> bool:
        user = self.users.get(name)
        return user is not None and check_password(user.password_hash, password, user.algorithm)

    def login_allowed_from(self, name: str, host: str) -> bool:
        return name not in self.loopback_users or is_loopback(host)

    # ---- permissions -------------------------------------------------------------------
    def set_permissions(self, user: str, vhost: str, configure: str, write: str,
                        read: str) -> None:
        self.user(user)
        self.permissions[(user, vhost)] = Permission(configure, write, read)
        self._changed()

    def clear_permissions(self, user: str, vhost: str) -> None:
        self.permissions.pop((user, vhost), None)
        self._changed()

    def forget_vhost(self, vhost: str) -> None:
        for key in [k for k in self.permissions if k[1] == vhost]:
            del self.permissions[key]
        self.topic_permissions = [p for p in self.topic_permissions if p.get("vhost") != vhost]
        self._changed()

    # Topic permissions are stored and listed here; enforcing them is issue 12's work.
    def set_topic_permission(self, user: str, vhost: str, exchange: str, write: str,
                             read: str) -> None:
        self.user(user)
        self.clear_topic_permissions(user, vhost, exchange)
        self.topic_permissions.append({"user": user, "vhost": vhost, "exchange": exchange,
                                       "write": write, "read": read})
        self._changed()

    def clear_topic_permissions(self, user: str, vhost: str,
                                exchange: str | None = None) -> int:
        before = len(self.topic_permissions)
        self.topic_permissions = [
            p for p in self.topic_permissions if not (
                p.get("user") == user and p.get("vhost") == vhost
                and (exchange is None or p.get("exchange") == exchange))]
        removed = before - len(self.topic_permissions)
        if removed:
            self._changed()
        return removed

    def may_access(self, user: str, vhost: str) -> bool:
        return user in self.users and (user, vhost) in self.permissions

    def allows(self, user: str, vhost: str, what: str, kind: str, name: str) -> bool:
        perm = self.permissions.get((user, vhost))
        if perm is None:
            return False
        if kind == "exchange" and name == "":
            name = "amq.default"
        return perm.allows(what, name)
