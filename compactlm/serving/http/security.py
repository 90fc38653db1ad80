"""API-key authentication and per-key token-bucket rate limiting.

Keys come from the environment (``COMPACTLM_API_KEYS``, comma-separated) or the command line, never
from the YAML config (which ``compactlm config show`` prints and whose hash is logged). Keys are
compared in constant time and only a short SHA-256 fingerprint ever reaches logs and metrics. A server
without keys listens on loopback only, unless it is told explicitly to serve everyone (``check_exposure``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable

from compactlm.errors import ConfigError

API_KEYS_ENV = "COMPACTLM_API_KEYS"


def key_fingerprint(key: str) -> str:
    """A short, stable identifier of a key that is safe to log."""
    return "key-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def keys_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """The API keys in ``COMPACTLM_API_KEYS`` (comma-separated; blanks ignored) of ``environ`` or ``os.environ``."""
    raw = (environ if environ is not None else os.environ).get(API_KEYS_ENV, "")
    return [k.strip() for k in raw.split(",") if k.strip()]


def is_loopback(host: str) -> bool:
    """True when binding ``host`` reaches only this machine: ``localhost``, 127.0.0.0/8 or ``::1``.

    Any other name or address counts as reachable from outside, ``0.0.0.0``, ``::`` and ``""`` (every
    interface) included: a host name may resolve to any interface, so only ``localhost`` is trusted.
    """
    name = host.strip().strip("[]").split("%")[0].rstrip(".").lower()  # [::1], fe80::1%eth0, localhost.
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback
    return (mapped or address).is_loopback


def check_exposure(host: str, keys: Collection[str], allow_unauthenticated: bool = False) -> None:
    """Refuse to serve without API keys on an address other machines can reach, unless told explicitly.

    Args:
        host: the bind address.
        keys: the accepted API keys (``--api-key`` and ``COMPACTLM_API_KEYS``).
        allow_unauthenticated: the explicit opt-in (``--allow-unauthenticated``,
            ``serve.allow_unauthenticated``).

    Raises:
        ConfigError: ``host`` is not a loopback address, ``keys`` is empty and ``allow_unauthenticated``
            is false; the one-line message names the three ways out.
    """
    # A blank key (``--api-key "$KEY"`` with KEY unset) is no key: ApiKeys ignores it, so must this check.
    if any(k.strip() for k in keys) or allow_unauthenticated or is_loopback(host):
        return
    raise ConfigError(f"refusing to serve on {host!r} without API keys: anyone who reaches it could use the "
                      f"model; set {API_KEYS_ENV}=<key>[,<key>...] (or --api-key), bind to 127.0.0.1, or pass "
                      "--allow-unauthenticated (serve.allow_unauthenticated=true) to serve without keys")


class ApiKeys:
    """The accepted keys; an empty set means authentication is off."""

    def __init__(self, keys: Iterable[str] = ()):
        self._keys = [k.encode("utf-8") for k in dict.fromkeys(keys) if k.strip()]

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured."""
        return bool(self._keys)

    def check(self, presented: str | None) -> bool:
        """True when ``presented`` is one of the keys (every key compared, in constant time)."""
        if presented is None:
            return False
        candidate = presented.encode("utf-8", "surrogatepass")
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(key, candidate)
        return found


class RateLimiter:
    """A token bucket per client: ``rate`` requests per second on average, bursts up to ``burst``.

    The token-bucket algorithm of traffic shaping (the meter of RFC 2697): a bucket of ``burst`` tokens
    refilled at ``rate`` per second; a request takes one token, or is refused until one is there.

    Args:
        rate: refill rate in requests per second; 0 disables limiting.
        burst: bucket capacity.
        max_clients: buckets kept (least recently used dropped first), so unknown clients cannot grow
            memory without bound.
        clock: monotonic time source (injectable for tests).
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst = rate, max(1, burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, last time)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when a rate is set (``rate > 0``)."""
        return self.rate > 0

    def acquire(self, client: str) -> float:
        """Take one request from ``client``'s bucket; returns 0 when allowed, else seconds until it would be."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait


def retry_after_header(wait_s: float) -> str:
    """Retry-After in whole seconds, never 0 (HTTP allows only integers)."""
    return str(max(1, math.ceil(wait_s)))
