"""The policies behind the decorators: cache, rate limit, retry, fallback, and the shells that drive them."""
