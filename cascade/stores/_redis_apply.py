"""The script that applies one record to Redis, and the call that runs it in a pipeline."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from ._codec import encode
from .counters import FLOAT_COUNTERS, day_delta, day_of, hour_of

if TYPE_CHECKING:
    import redis

    from ..events import CallRecord
    from ._redis_url import Keys

__all__ = ["APPLY", "APPLY_SHA", "apply"]

# KEYS: seen, records, day hash, hour hash, and the task set (not given on a cluster: another
# slot). ARGV: seen ttl, day ttl, task, trim kind, trim threshold, record ('' when
# unsampled), counters as JSON (integers as numbers, floats as text for HINCRBYFLOAT: exact,
# and one argument instead of dozens keeps the client's packing cheap), hour ttl. The hour
# takes the fields without a ':' (not fail:, lat:), as ``counters.is_hour_field`` says.
APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
if ARGV[6] ~= '' then redis.call('XADD', KEYS[2], ARGV[4], '~', ARGV[5], '*', 'r', ARGV[6]) end
for field, value in pairs(cjson.decode(ARGV[7])) do
  local plain = not string.find(field, ':', 1, true)
  if type(value) == 'string' then
    redis.call('HINCRBYFLOAT', KEYS[3], field, value)
    if plain then redis.call('HINCRBYFLOAT', KEYS[4], field, value) end
  else
    redis.call('HINCRBY', KEYS[3], field, value)
    if plain then redis.call('HINCRBY', KEYS[4], field, value) end
  end
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[8])
if KEYS[5] then redis.call('SADD', KEYS[5], ARGV[3]) end
return 1
"""
APPLY_SHA = hashlib.sha1(APPLY.encode()).hexdigest()


def apply(
    pipe: redis.client.Pipeline, k: Keys, r: CallRecord, trim: tuple[str, str],
    ttls: tuple[int, int, int],
) -> None:  # fmt: skip
    """Queue the script for ``r`` on ``pipe``; ``ttls``: the seen key's, the day's, the hour's
    (seconds)."""
    counters = {
        name: repr(float(v)) if name in FLOAT_COUNTERS else v for name, v in day_delta(r).items()
    }
    keys = [
        k.seen(r.task, r.id), k.records(r.task), k.day(r.task, day_of(r.time)),
        k.hour(r.task, hour_of(r.time)),
    ]  # fmt: skip
    if not k.cluster:
        keys.append(k.tasks)
    seen_ttl, day_ttl, hour_ttl = ttls
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
        hour_ttl,
    )
