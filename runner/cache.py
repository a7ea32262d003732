"""Public path of the cache backend: ``"BACKEND": "runner.cache.PrefixedRedisCache"``.

The code lives in ``runner.web.cache``; this name is what a project's CACHES may hold.
"""

from runner.web.cache import PrefixedRedisCache  # noqa: F401 (the public name)
