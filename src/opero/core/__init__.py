"""The policies behind the decorators (cache, rate limit, retry, fallback) and their shells."""
