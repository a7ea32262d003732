"""A Django Redis cache that shares one Redis database with Celery safely.

Redis Cloud gives one database per subscription (no ``SELECT``), so the cache and Celery's
queues live side by side. Django's ``RedisCache.clear()`` is ``FLUSHDB``: it would delete
every queued and unacknowledged task. Here ``clear()`` deletes only the cache's own keys
(those under its key prefix), found with ``SCAN`` so Redis is never blocked.
"""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache

DEFAULT_KEY_PREFIX = "django-cache"
SCAN_BATCH = 500


class PrefixedRedisCache(RedisCache):
    """Django's Redis cache, always prefixed, whose ``clear`` spares other keys."""

    def __init__(self, server, params):
        params = dict(params)
        params["KEY_PREFIX"] = params.get("KEY_PREFIX") or DEFAULT_KEY_PREFIX
        super().__init__(server, params)

    def clear(self) -> bool:
        client = self._cache.get_client(write=True)
        pattern = f"{self.key_prefix}:*"
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
        return True
