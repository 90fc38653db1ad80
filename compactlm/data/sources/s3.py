"""``s3://bucket/prefix`` sources, read through boto3.

Every data object under the prefix is a file of the source; its ETag and size are its fingerprint, so
unchanged objects are never downloaded again (see ``compactlm.data.ingest``). The endpoint is
``data.s3_endpoint_url``, else AWS_ENDPOINT_URL (any S3-compatible store: MinIO, Ceph, moto...), with
the usual AWS_* credentials. boto3 is imported inside the functions: only S3 sources pay for it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath

import pandas as pd

from compactlm.data.sources.files import SUPPORTED_SUFFIXES, SourceFile, is_data_file, read_table
from compactlm.errors import DataError

S3_PREFIX = "s3://"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split an S3 address into its bucket and key prefix.

    Args:
        uri: ``s3://bucket`` or ``s3://bucket/prefix`` (the prefix may be empty or one object's key).

    Returns:
        ``(bucket, prefix)``, the prefix without its leading slash.

    Raises:
        DataError: ``uri`` does not start with ``s3://`` or names no bucket.
    """
    rest = uri.removeprefix(S3_PREFIX)
    bucket, _, prefix = rest.partition("/")
    if not uri.startswith(S3_PREFIX) or not bucket:
        raise DataError(f"{uri}: not an s3://bucket/prefix address")
    return bucket, prefix


def s3_client(endpoint_url: str | None = None):
    """A boto3 S3 client with short timeouts and few retries.

    Args:
        endpoint_url: an S3-compatible endpoint (``http://host:port``); None: AWS_ENDPOINT_URL, else AWS.

    Returns:
        A ``botocore`` S3 client: 5 s to connect, 60 s to read, 3 attempts in botocore's "standard"
        retry mode (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html).
    """
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def _s3_error(uri: str, exc: Exception) -> DataError:
    """One line for the usual S3 failures (no credentials, no bucket, no endpoint, access denied)."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return DataError(f"{uri}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, EndpointConnectionError):
        return DataError(f"{uri}: cannot reach the S3 endpoint {exc.kwargs.get('endpoint_url', '')}".rstrip())
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            return DataError(f"{uri}: the bucket does not exist")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return DataError(f"{uri}: access denied ({code}); check the AWS credentials")
        return DataError(f"{uri}: S3 error {code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": "))
    return DataError(f"{uri}: S3 request failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")


def list_s3_files(uri: str, endpoint_url: str | None = None) -> tuple[list[SourceFile], list[str]]:
    """The data objects under an ``s3://bucket/prefix`` (sorted by key), and the keys ignored (other types).

    Keys under a hidden folder or file (a part starting with ".") and folder markers are skipped. A
    file's fingerprint is ``"<ETag>:<size>"``, read from the listing without downloading the object.

    Args:
        uri: ``s3://bucket/prefix``; a prefix naming one object lists that object.
        endpoint_url: as in ``s3_client``.

    Returns:
        ``(files, ignored)``: the data objects (key relative to the prefix) and the relative keys of
        objects whose suffix is not a supported data format.

    Raises:
        DataError: unreachable endpoint, missing bucket or credentials, or no data object under the prefix.
    """
    bucket, prefix = parse_s3_uri(uri)
    client = s3_client(endpoint_url)
    files, ignored = [], []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                relative = key[len(prefix):].lstrip("/") or PurePosixPath(key).name
                if key.endswith("/") or any(p.startswith(".") for p in PurePosixPath(relative).parts):
                    continue
                if not is_data_file(PurePosixPath(key).name):
                    ignored.append(relative)
                    continue
                fingerprint = f"{item.get('ETag', '').strip(chr(34))}:{item['Size']}"
                files.append(SourceFile(f"s3://{bucket}/{key}", relative, fingerprint, int(item["Size"])))
    except Exception as exc:
        raise _s3_error(uri, exc) from None
    if not files:
        raise DataError(f"{uri}: no data object under this prefix (looked for {', '.join(SUPPORTED_SUFFIXES)})")
    return sorted(files, key=lambda f: f.key), ignored


def read_s3_file(file: SourceFile, endpoint_url: str | None = None,
                 warnings: list[str] | None = None) -> pd.DataFrame:
    """Download one object to a temporary file and read it (errors name its ``s3://`` address).

    Args:
        file: an object listed by ``list_s3_files``.
        endpoint_url: as in ``s3_client``.
        warnings: as in ``read_table``.

    Raises:
        DataError: the download failed (one line, see ``list_s3_files``) or the file is unreadable
            (see ``read_table``).
    """
    bucket, key = parse_s3_uri(file.uri)
    client = s3_client(endpoint_url)
    with tempfile.TemporaryDirectory(prefix="compactlm-s3-") as tmp:
        local = Path(tmp) / PurePosixPath(key).name
        try:
            client.download_file(bucket, key, str(local))
        except Exception as exc:
            raise _s3_error(file.uri, exc) from None
        return read_table(local, name=file.uri, warnings=warnings)
