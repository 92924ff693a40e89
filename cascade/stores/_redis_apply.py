"""The script that applies one record to Redis, and the call that runs it in a pipeline."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from ._codec import encode
from .counters import FLOAT_COUNTERS, HOUR_COUNTERS, day_of, hour_of

if TYPE_CHECKING:
    import redis

    from ..events import CallRecord
    from ._redis_url import Keys

__all__ = ["APPLY", "APPLY_SHA", "add_hours", "apply"]

# KEYS: seen, records, day hash, and the task set (not given on a cluster: another slot).
# ARGV: seen ttl, day ttl, task, trim kind, trim threshold, record ('' when unsampled),
# counters as JSON (integers as numbers, floats as text for HINCRBYFLOAT: exact, and one
# argument instead of dozens keeps the client's packing cheap). The day's expiry is set when
# its first call creates it ('calls' is then 1), not on every write. Returns 1 when the
# record was applied, 0 when its id was seen already.
APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
if ARGV[6] ~= '' then redis.call('XADD', KEYS[2], ARGV[4], '~', ARGV[5], '*', 'r', ARGV[6]) end
for field, value in pairs(cjson.decode(ARGV[7])) do
  if type(value) == 'string' then redis.call('HINCRBYFLOAT', KEYS[3], field, value)
  elseif redis.call('HINCRBY', KEYS[3], field, value) == 1 and field == 'calls' then
    redis.call('EXPIRE', KEYS[3], ARGV[2])
  end
end
if KEYS[4] then redis.call('SADD', KEYS[4], ARGV[3]) end
return 1
"""
APPLY_SHA = hashlib.sha1(APPLY.encode()).hexdigest()


def apply(
    pipe: redis.client.Pipeline, k: Keys, r: CallRecord, delta: dict[str, int | float],
    trim: tuple[str, str], ttls: tuple[int, int],
) -> None:  # fmt: skip
    """Queue the script for ``r`` (its ``day_delta``) on ``pipe``; ``ttls``: the seen key's
    and the day's (seconds)."""
    counters = {name: repr(float(v)) if name in FLOAT_COUNTERS else v for name, v in delta.items()}
    keys = [k.seen(r.task, r.id), k.records(r.task), k.day(r.task, day_of(r.time))]
    if not k.cluster:
        keys.append(k.tasks)
    seen_ttl, day_ttl = ttls
    # EVALSHA by name: redis-py's cluster pipeline refuses its evalsha() method, though
    # it routes the command by its keys, which here share one slot.
    pipe.execute_command(  # type: ignore[no-untyped-call]
        "EVALSHA",
        APPLY_SHA,
        len(keys),
        *keys,
        seen_ttl,
        day_ttl,
        r.task,
        *trim,
        encode(r) if r.sampled else "",
        json.dumps(counters, separators=(",", ":")),
    )


def add_hours(
    pipe: redis.client.Pipeline, k: Keys, applied: list[tuple[CallRecord, dict[str, int | float]]],
    ttl: int,
) -> None:  # fmt: skip
    """Queue the hourly counters of the records the script applied, summed per task and hour:
    a few commands a batch rather than several a record."""
    sums: dict[str, dict[str, float]] = {}
    for r, delta in applied:
        hour = sums.setdefault(k.hour(r.task, hour_of(r.time)), {})
        for name in HOUR_COUNTERS:
            if name in delta:
                hour[name] = hour.get(name, 0) + delta[name]
    for key, fields in sums.items():
        for name, value in fields.items():
            if name in FLOAT_COUNTERS:
                pipe.hincrbyfloat(key, name, value)
            else:
                pipe.hincrby(key, name, int(value))
        pipe.expire(key, ttl)
