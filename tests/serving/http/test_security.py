"""API keys and per-key rate limits: the token bucket by itself, then enforced by a live server."""

from __future__ import annotations

import httpx
import openai
import pytest

from compactlm.config import ServeConfig
from compactlm.errors import ConfigError
from compactlm.models.tokenizer import format_prompt
from compactlm.serving.engine.loading import load_model
from compactlm.serving.http.app import create_app
from compactlm.serving.http.security import (
    ApiKeys,
    RateLimiter,
    check_exposure,
    is_loopback,
    key_fingerprint,
    keys_from_env,
    retry_after_header,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_bursts_then_the_rate_per_client():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)  # empty: one token every 0.5 s
    assert limiter.acquire("b") == 0.0  # buckets are per client
    clock.now += 0.25
    assert limiter.acquire("a") == pytest.approx(0.25)  # refused calls take nothing
    clock.now += 0.25
    assert limiter.acquire("a") == 0.0
    clock.now += 60
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0  # refills only up to the burst
    assert RateLimiter(rate=0, burst=1).acquire("a") == 0.0 and not RateLimiter(rate=0, burst=1).enabled


def test_bucket_memory_is_bounded():
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=3, clock=Clock())
    for client in "abcde":
        limiter.acquire(client)
    assert list(limiter._buckets) == ["c", "d", "e"]


def test_keys_are_checked_exactly_and_fingerprinted():
    keys = ApiKeys(["alpha", "beta", ""])
    assert keys.enabled and keys.check("beta") and not keys.check("bet") and not keys.check(None)
    assert not ApiKeys([]).enabled
    assert keys_from_env({"COMPACTLM_API_KEYS": " a, b ,,c"}) == ["a", "b", "c"]
    assert key_fingerprint("alpha").startswith("key-") and "alpha" not in key_fingerprint("alpha")
    assert retry_after_header(0.01) == "1" and retry_after_header(2.2) == "3"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST.", "::1", "[::1]",
                                  "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"])
def test_loopback_addresses_serve_without_keys(host):
    assert is_loopback(host)
    check_exposure(host, [])


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "", "10.0.0.5", "192.168.1.2", "fe80::1%eth0",
                                  "::ffff:10.0.0.1", "myhost", "localhost.example.com", "128.0.0.1"])
def test_other_addresses_need_keys_or_the_explicit_opt_in(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigError) as info:
        check_exposure(host, [])
    message = str(info.value)
    assert "\n" not in message and f"refusing to serve on {host!r} without API keys" in message
    assert "COMPACTLM_API_KEYS" in message and "--allow-unauthenticated" in message
    check_exposure(host, ["a-key"])
    check_exposure(host, [], allow_unauthenticated=True)
    with pytest.raises(ConfigError):
        check_exposure(host, ["", "  "])  # blank keys are no keys (ApiKeys ignores them too)
    assert not ApiKeys(["", "  "]).enabled


def test_serve_config_rejects_bad_limits():
    with pytest.raises(ConfigError, match="serve.rate_limit must be >= 0"):
        ServeConfig(rate_limit=-1)
    with pytest.raises(ConfigError, match="serve.quantization must be one of fp32, int8, int4, got 'int2'"):
        ServeConfig(quantization="int2")
    assert ServeConfig(quantization="none").quantization == "fp32"


def test_live_server_enforces_keys_and_per_key_rate_limits(tiny_model_dir, start_server, caplog):
    caplog.set_level("DEBUG", logger="compactlm")
    config = ServeConfig(threads=0, rate_limit=0.5, rate_burst=2)
    live = start_server(create_app(config, api_keys=["key-one", "key-two"],
                                   preloaded=load_model(model_dir=tiny_model_dir, max_batch_size=2)))
    model = live.app.state.server.current.model.model_id
    ask = {"model": model, "prompt": format_prompt("hi"), "max_tokens": 2}

    with pytest.raises(openai.AuthenticationError, match="Incorrect or missing API key"):
        live.client(api_key="wrong").completions.create(**ask)
    assert httpx.post(f"{live.url}/v1/completions", json=ask).status_code == 401  # no header at all
    assert httpx.get(f"{live.url}/health").status_code == 200  # probes and metrics need no key
    assert httpx.get(f"{live.url}/metrics").status_code == 200
    schema = httpx.get(f"{live.url}/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]

    one = live.client(api_key="key-one")
    assert one.completions.create(**ask).usage.completion_tokens == 2
    assert one.models.list().data[0].id == model  # burst of 2 used up
    with pytest.raises(openai.RateLimitError) as info:
        one.completions.create(**ask)
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert info.value.body["code"] == "rate_limit_exceeded"
    assert live.client(api_key="key-two").completions.create(**ask).choices  # another key, another bucket

    metrics = httpx.get(f"{live.url}/metrics").text
    assert 'compactlm_requests_rejected_total{reason="rate_limit"} 1.0' in metrics
    assert 'compactlm_requests_rejected_total{reason="auth"} 2.0' in metrics
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert key_fingerprint("key-one") in logged  # requests are logged with the key's fingerprint...
    for secret in ("key-one", "key-two"):  # ...never with a key, in the logs or the metrics
        assert secret not in logged and secret not in metrics
