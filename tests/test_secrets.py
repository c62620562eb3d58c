"""Redis credentials never show: not in info, analysis, reprs, logs, exception text or the CLI.

The functions here are decorated with real password-bearing configs for the
redis-server on 127.0.0.1:6379, which has no ACL user "app": each call's
AUTH fails there, so the failure paths (WARNING lines, the CLI's error
message) run for real and are checked too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opero import ConfigurationError, opero, opmap
from opero.cli import main
from opero.core.secrets import MASK, mask_config, mask_url, masked_settings, scrub, url_secrets
from opero.utils.introspection import analyze_function, get_opero_info
from redis_server import redis_answers

SECRET = "S3cr3t-pw-9f1c"

#: Every way a redis password can be given.  Each test fills in a password of its
#: own, so it opens stores of its own (stores are shared per server and settings).
#: Nothing listens on port 1, so those are refused at once (a password alone is
#: accepted by a server that has none set: only the ACL user "app" fails AUTH).
CONFIGS = [
    pytest.param({"url": "redis://app:{}@127.0.0.1:6379/0"}, id="url-user-password"),
    pytest.param({"url": "redis://:{}@127.0.0.1:6379/0"}, id="url-password"),
    pytest.param({"url": "rediss://:{}@127.0.0.1:1/0"}, id="rediss"),
    pytest.param(
        {"url": "unix:///tmp/opero-no.sock?db=0&password={}"},
        id="unix-query",
        # redis-py 5.0.0 leaves the socket of a failed unix connect open (fixed later).
        marks=[
            pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
            pytest.mark.filterwarnings(
                "ignore:Exception ignored in. <socket.socket"
                ":pytest.PytestUnraisableExceptionWarning"
            ),
        ],
    ),
    pytest.param({"host": "127.0.0.1", "port": 1, "password": "{}"}, id="password-key"),
]


@pytest.fixture
def secret() -> str:
    """A password no other test uses."""
    return f"S3cr3t-{uuid.uuid4().hex[:12]}"


def fill(template: dict[str, Any], secret: str) -> dict[str, Any]:
    return {
        key: value.format(secret) if isinstance(value, str) else value
        for key, value in template.items()
    }


needs_redis = pytest.mark.skipif(not redis_answers(), reason="no redis-server on 127.0.0.1:6379")


def shown(func: Any) -> str:
    """Everything opero shows about ``func``."""
    info = get_opero_info(func)
    return "\n".join([repr(info), str(info), analyze_function(func), repr(func.__opero__)])


@pytest.mark.parametrize("template", CONFIGS)
@pytest.mark.parametrize("layer", ["cache", "rate_limit"])
def test_info_analysis_and_repr_mask_the_password(
    layer: str, template: dict[str, Any], secret: str
) -> None:
    config = fill(template, secret)
    if layer == "cache":
        settings = {"cache": True, "cache_backend": "redis", "cache_backend_config": config}
    else:
        settings = {
            "rate_limit": 1000,
            "rate_limit_backend": "redis",
            "rate_limit_backend_config": config,
        }

    @opero(**settings, rate_limit_scope=f"secret-{uuid.uuid4().hex}")
    def lookup(x: int) -> int:
        return x

    text = shown(lookup)
    assert secret not in text
    masked = get_opero_info(lookup)["configuration"][f"{layer}_backend_config"]
    assert MASK in repr(masked)
    assert masked == mask_config(config)


@needs_redis
@pytest.mark.parametrize("template", CONFIGS[:1] + CONFIGS[2:])
def test_a_failing_cache_logs_without_the_password(
    template: dict[str, Any], secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = fill(template, secret)
    namespace = f"secret-{uuid.uuid4().hex}"

    @opero(
        cache=True,
        cache_backend="redis",
        cache_backend_config=config,
        cache_namespace=namespace,
    )
    def lookup(x: int) -> int:
        return x * 2

    @opero(
        cache=True,
        cache_backend="redis",
        cache_backend_config=config,
        cache_namespace=namespace,
    )
    async def alookup(x: int) -> int:
        return x * 3

    with caplog.at_level(logging.DEBUG, logger="opero"):
        assert lookup(2) == 4  # AUTH (or the socket) fails: the call goes on uncached
        assert asyncio.run(alookup(2)) == 6
        text = shown(lookup) + shown(alookup)
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert secret not in caplog.text
    assert secret not in text


@needs_redis
def test_a_failing_shared_rate_limit_logs_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @opero(
        rate_limit=1000,
        rate_limit_backend="redis",
        rate_limit_scope=f"secret-{uuid.uuid4().hex}",
        rate_limit_backend_config={"url": f"redis://app:{SECRET}@127.0.0.1:6379/0"},
    )
    def ping() -> str:
        return "pong"

    with caplog.at_level(logging.DEBUG, logger="opero"):
        assert ping() == "pong"
    assert "unavailable" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in shown(ping)


@needs_redis
def test_a_given_client_is_shown_by_type_only() -> None:
    import redis  # noqa: PLC0415
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    # No retries: redis-py's default retries a failed AUTH with backoff for seconds.
    client = redis.Redis(
        host="127.0.0.1", port=6379, username="app", password=SECRET, retry=Retry(NoBackoff(), 0)
    )

    @opero(cache=True, cache_backend="redis", cache_backend_config={"client": client})
    def lookup(x: int) -> int:
        return x

    try:
        config = get_opero_info(lookup)["configuration"]["cache_backend_config"]
        assert config == {"client": "<Redis>"}
        assert SECRET not in shown(lookup)
    finally:
        client.close()


def test_a_mapped_function_masks_the_password_too() -> None:
    @opmap(
        progress=False,
        cache=True,
        cache_backend="redis",
        cache_backend_config={"url": f"redis://app:{SECRET}@127.0.0.1:6379/0"},
    )
    def double(x: int) -> int:
        return 2 * x

    assert SECRET not in shown(double)


@pytest.mark.parametrize(
    "url",
    [
        f"http://app:{SECRET}@127.0.0.1:6379/0",
        f"redis://app:{SECRET}@127.0.0.1:port/0",
        f"redis://app:{SECRET}@[::1/0",
    ],
)
def test_a_bad_url_is_rejected_without_quoting_it(url: str) -> None:
    with pytest.raises(ConfigurationError, match="cache_backend_config") as info:
        opero(cache=True, cache_backend="redis", cache_backend_config={"url": url})(abs)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


def test_log_lines_and_tracebacks_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    """Whatever an error quotes, the "opero" logger masks URL credentials in what it emits."""
    log = logging.getLogger("opero")
    with caplog.at_level(logging.DEBUG, logger="opero"):
        log.warning("cannot reach %s", f"redis://app:{SECRET}@cache:6379/0")
        log.info("socket unix:///run/redis.sock?password=%s refused", SECRET)
        try:
            raise ConnectionError(f"Error connecting to rediss://:{SECRET}@cache:6380")
        except ConnectionError:
            log.warning("store failed", exc_info=True)
    assert SECRET not in caplog.text
    assert "redis://<set>@cache:6379/0" in caplog.text
    assert "rediss://<set>@cache:6380" in caplog.text


def test_plain_log_lines_keep_their_arguments(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="opero"):
        logging.getLogger("opero").debug("opero: %s rate-limited, waiting %.3fs", "f", 0.5)
    (record,) = caplog.records
    assert record.args == ("f", 0.5)


@needs_redis
def test_the_cli_masks_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://app:{SECRET}@127.0.0.1:6379/0"
    assert main(["cache", "stats", "--backend", "redis", "--url", url]) == 1
    out, err = capsys.readouterr()
    assert "AuthenticationError" in err
    assert "redis://127.0.0.1:6379/0" in err
    assert SECRET not in out + err
    bad = f"redis://app:{SECRET}@127.0.0.1:port/0"
    assert main(["cache", "clear", "--yes", "--backend", "redis", "--url", bad]) == 2
    out, err = capsys.readouterr()
    assert "url" in err
    assert SECRET not in out + err


def test_the_cli_masks_a_password_the_error_quotes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server error that quotes the URL (some proxies do) has the password masked."""
    from opero.core.backends.redis import RedisStore  # noqa: PLC0415

    url = f"redis://app:{SECRET}@127.0.0.1:6379/0"

    def quoting_stats(self: RedisStore, prefix: str) -> dict[str, Any]:
        raise ConnectionError(f"proxy refused {url} (password {SECRET})")

    monkeypatch.setattr(RedisStore, "stats", quoting_stats)
    assert main(["cache", "stats", "--backend", "redis", "--url", url]) == 1
    err = capsys.readouterr().err
    assert "proxy refused redis://<set>@127.0.0.1:6379/0" in err
    assert SECRET not in err


@given(
    password=st.text(
        alphabet=st.characters(blacklist_characters="/?#", blacklist_categories=("Cs", "Z", "Cc")),
        min_size=1,
        max_size=20,
    ),
    user=st.sampled_from(["", "app", "default"]),
)
def test_any_url_password_is_masked(password: str, user: str) -> None:
    url = f"redis://{user}:{password}@host:6379/0"
    assert mask_url(url) == "redis://<set>@host:6379/0"
    assert password in url_secrets(url)
    assert scrub(f"failed: {url}.") == "failed: redis://<set>@host:6379/0."


def test_settings_masks() -> None:
    settings = {
        "cache_secret": "hmac-key",
        "cache_backend_config": {"password": SECRET, "username": "app", "port": 6379},
        "rate_limit_backend_config": {"url": f"unix:///s.sock?password={SECRET}&db=1"},
        "client": f"tls://app:{SECRET}@scheduler:8786",
        "retries": 3,
    }
    assert masked_settings(settings) == {
        "cache_secret": MASK,
        "cache_backend_config": {"password": MASK, "username": MASK, "port": 6379},
        "rate_limit_backend_config": {"url": f"unix:///s.sock?password={MASK}&db=1"},
        "client": f"tls://{MASK}@scheduler:8786",
        "retries": 3,
    }
    assert settings["cache_backend_config"]["password"] == SECRET  # the original is untouched
