"""Fixtures of the data tests: an S3-compatible server on loopback (moto, spoken to over HTTP)."""

from __future__ import annotations

import boto3
import pytest


@pytest.fixture
def s3(monkeypatch):
    """A fresh in-memory S3 API on 127.0.0.1 (moto server mode) with bucket ``compactlm-data``; the AWS_*
    variables point boto3 and DVC at it. Yields a boto3 client."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="compactlm-data")
    yield client
    server.stop()
