"""Redis store URLs: our own parameters, the client they make, and the key layout.

``redis://`` and ``rediss://`` name one server (the rest of the URL goes to redis-py's
``Redis.from_url``). ``redis+cluster://[:password@]host:port[,host:port...]`` (TLS:
``rediss+cluster://``) names a Redis Cluster by one or more of its nodes. Keys of one task
share a hash tag in cluster mode (``{task}``), so that each record's script touches one slot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

OWN_PARAMS = ("prefix", "maxlen", "retention", "spool", "dedupe", "days", "hours")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}


# Query parameters whose values are secrets (redis-py reads a password from the query too).
_SECRET_PARAMS = ("pass", "pw", "secret", "token", "credential", "key")


def _odd(url: str) -> bool:
    """True for a URL whose parts urllib would split somewhere a secret may sit: one it
    cannot split (an unencoded '[' or ']'), one with a fragment (an unencoded '#'), or an
    '@' outside the parsed host part (an unencoded '?', '/' or '#' in the password, or not
    '//' after the scheme)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return True
    return bool(parts.fragment) or ("@" in url and "@" not in parts.netloc)


def _mask_all(url: str) -> str:
    """Everything up to the last '@' after the scheme, and any query, as ``***``."""
    scheme, sep, rest = url.partition(":")
    if not sep:
        return "***"
    if "@" in rest:
        rest = "//***@" + rest.rpartition("@")[2]
    head, q, _ = rest.partition("?")
    head, h, _ = head.partition("#")
    return f"{scheme}:{head}" + ("?***" if q else "") + ("#***" if h else "")


def mask_url(url: str) -> str:
    """The URL with its password (in the user info or the query) and other secret-looking
    query values replaced by ``***``, safe to log or show; a URL urllib would split where
    a secret may sit is masked from its scheme to its host, and in all of its query."""
    if _odd(url):
        return _mask_all(url)
    parts = masked = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        masked = masked._replace(netloc=f"{user}:***@{hosts}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        first = next(
            (i for i, (k, _) in enumerate(pairs) if any(s in k.lower() for s in _SECRET_PARAMS)),
            None,
        )
        if first is not None:  # from the first secret on: an unencoded '&' in it splits it
            shown = urlencode(pairs[:first]) + ("&" if first else "")
            masked = masked._replace(query=shown + f"{pairs[first][0]}=***")
    return url if masked == parts else urlunsplit(masked)  # else "bogus://" became "bogus:"


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``15m``, ``45s`` or a plain number of seconds."""
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 15m, 45s)") from None


@dataclass(frozen=True, slots=True)
class Target:
    """What a Redis store URL names: how to connect, and our own parameters."""

    masked: str  # the URL as shown and logged
    own: dict[str, str]  # our parameters, removed from the URL
    cluster: bool
    spool_key: str  # names the spool directory: one per server (or cluster) and prefix
    _redis_url: str = ""
    _nodes: tuple[tuple[str, int], ...] = ()
    _auth: tuple[str | None, str | None] = (None, None)
    _tls: bool = False

    def client(self) -> redis.Redis | RedisCluster:
        """A client; a cluster client connects at once (raises ``redis.RedisError``). A URL
        parameter redis-py does not know raises ``ValueError`` here, not at the first write
        (where it would look like a fault of the records, and cost them)."""
        retry = Retry(NoBackoff(), 1)
        if not self.cluster:
            made = redis.Redis.from_url(self._redis_url, retry=retry, **_TIMEOUTS)
            pool = made.connection_pool
            try:  # a connection object, not a connection: nothing is sent
                pool.connection_class(**pool.connection_kwargs)
            except TypeError as e:
                raise ValueError(f"a parameter redis-py does not take ({e})") from None
            return made
        user, password = self._auth
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in self._nodes],  # type: ignore[no-untyped-call]
            username=user,
            password=password,
            ssl=self._tls,
            retry=retry,
            **_TIMEOUTS,
        )


def parse(url: str, prefix: str) -> Target:
    """Split a ``redis://`` or ``redis+cluster://`` URL; raises ``ValueError`` naming the
    problem (never showing the password)."""
    masked = mask_url(url)
    if _odd(url) or not url.partition(":")[2].startswith("//"):
        raise ValueError(
            f"cannot read {masked} safely: a Redis URL is redis://[user:password@]host:port/db, "
            "with '#', '?', '/', '[' and ']' in the password percent-encoded (%23, %3F, %2F, "
            "%5B, %5D)"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query))
    own = {k: query.pop(k) for k in OWN_PARAMS if k in query}
    prefix = own.get("prefix", prefix)
    if scheme not in CLUSTER_SCHEMES:
        redis_url = urlunsplit(parts._replace(query=urlencode(query)))
        try:
            number = parts.port
        except ValueError:  # urllib's message quotes the text, which may be a password
            raise ValueError(f"invalid port in {masked}") from None
        key = f"{parts.hostname}:{number}{parts.path}/{prefix}"
        return Target(masked, own, False, key, _redis_url=redis_url)
    if query:
        raise ValueError(f"unknown parameters {sorted(query)} in {masked}; known: {OWN_PARAMS}")
    if parts.path not in ("", "/"):
        raise ValueError(f"a Redis Cluster has no databases: remove {parts.path!r} from {masked}")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"invalid node {node!r} in {masked}: use host:port[,host:port...]")
        nodes.append((host.strip("[]"), int(port)))
    key = "cluster:" + ",".join(sorted(f"{h}:{p}" for h, p in nodes)) + f"/{prefix}"
    return Target(
        masked,
        own,
        True,
        key,
        _nodes=tuple(nodes),
        _auth=(unquote(user) or None, unquote(password) or None),
        _tls=scheme.startswith("rediss"),
    )


def spool_name(target: Target) -> str:
    """The spool directory's name for a target."""
    return hashlib.sha1(target.spool_key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names under a prefix; tagged by task in cluster mode.

    One server (unchanged from the first release)::

        {prefix}:records:{task}  {prefix}:day:{task}:{day}  {prefix}:hour:{task}:{hour}
        {prefix}:tasks  {prefix}:seen:{id}

    A cluster: ``{prefix}:records:{{task}}``, ``{prefix}:day:{{task}}:{day}``,
    ``{prefix}:hour:{{task}}:{hour}``, ``{prefix}:seen:{{task}}:{id}`` (one slot per task)
    and ``{prefix}:tasks``.
    """

    prefix: str
    cluster: bool

    def _task(self, task: str) -> str:
        return f"{{{task}}}" if self.cluster else task

    def records(self, task: str) -> str:
        return f"{self.prefix}:records:{self._task(task)}"

    def day(self, task: str, day: str) -> str:
        return f"{self.prefix}:day:{self._task(task)}:{day}"

    def hour(self, task: str, hour: str) -> str:
        return f"{self.prefix}:hour:{self._task(task)}:{hour}"

    def seen(self, task: str, record_id: str) -> str:
        if self.cluster:
            return f"{self.prefix}:seen:{{{task}}}:{record_id}"
        return f"{self.prefix}:seen:{record_id}"

    @property
    def tasks(self) -> str:
        return f"{self.prefix}:tasks"
