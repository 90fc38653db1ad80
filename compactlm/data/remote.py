"""Remote sources: ``s3://bucket/prefix`` through boto3, and Hugging Face datasets (local path or hub name).

S3: every data object under the prefix is a file of the source; its ETag and size are its fingerprint,
so unchanged objects are never downloaded again (see ``compactlm.data.incremental``). The endpoint is
``data.s3_endpoint_url``, else AWS_ENDPOINT_URL (any S3-compatible store: MinIO, Ceph, moto...), with
the usual AWS_* credentials.

Hugging Face: ``hf:PATH`` loads a dataset saved with ``save_to_disk`` (``load_from_disk``) or a folder
of data files (``load_dataset(PATH)``); ``hf:NAME`` loads a hub dataset, which needs the network: with
HF_HUB_OFFLINE=1 (the embedded default) it fails with a one-line error.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath

import pandas as pd

from compactlm.data.sources import SUPPORTED_SUFFIXES, SourceFile, read_table
from compactlm.errors import DataError


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix)."""
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise DataError(f"{uri}: not an s3://bucket/prefix address")
    return bucket, prefix


def s3_client(endpoint_url: str | None = None):
    """A boto3 S3 client for ``endpoint_url`` (else AWS_ENDPOINT_URL), with short timeouts and few retries."""
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
                if PurePosixPath(key).suffix.lower() not in SUPPORTED_SUFFIXES:
                    ignored.append(relative)
                    continue
                fingerprint = f"{item.get('ETag', '').strip(chr(34))}:{item['Size']}"
                files.append(SourceFile(f"s3://{bucket}/{key}", relative, fingerprint, int(item["Size"])))
    except Exception as exc:
        raise _s3_error(uri, exc) from None
    if not files:
        raise DataError(f"{uri}: no data object under this prefix (looked for {', '.join(SUPPORTED_SUFFIXES)})")
    return sorted(files, key=lambda f: f.key), ignored


def read_s3_file(file: SourceFile, endpoint_url: str | None = None) -> pd.DataFrame:
    """Download one object to a temporary file and read it (errors name its ``s3://`` address)."""
    bucket, key = parse_s3_uri(file.uri)
    client = s3_client(endpoint_url)
    with tempfile.TemporaryDirectory(prefix="compactlm-s3-") as tmp:
        local = Path(tmp) / PurePosixPath(key).name
        try:
            client.download_file(bucket, key, str(local))
        except Exception as exc:
            raise _s3_error(file.uri, exc) from None
        return read_table(local, name=file.uri)


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def read_hf_dataset(spec: str, split: str | None = None) -> pd.DataFrame:
    """Rows of a Hugging Face dataset: ``hf:PATH`` (saved or a data folder) or ``hf:NAME`` (the hub).

    Args:
        spec: the source, with its ``hf:`` prefix.
        split: one split of a dataset dict; None concatenates every split (in name order).

    Raises:
        DataError: an unknown split, an unreadable dataset, or a hub dataset while the hub is unreachable.
    """
    import datasets

    target = spec.removeprefix("hf:")
    path = Path(target).expanduser()
    datasets.disable_progress_bars()
    try:
        if path.exists():
            if _is_saved_dataset(path):
                loaded = datasets.load_from_disk(str(path))
            else:
                with tempfile.TemporaryDirectory(prefix="compactlm-hf-") as cache:
                    loaded = datasets.load_dataset(str(path), cache_dir=cache)
                    return _to_frame(loaded, split, spec)
        else:
            loaded = datasets.load_dataset(target)
    except (ConnectionError, OSError) as exc:
        if not path.exists():
            offline = " (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
            raise DataError(f"Hugging Face dataset {target!r}: the hub is unreachable{offline}; download the "
                            f"dataset where the network allows and pass its local path as hf:PATH") from None
        raise DataError(f"Hugging Face dataset {target}: {str(exc).splitlines()[0][:200]}") from None
    except Exception as exc:  # datasets raises many types for broken folders
        raise DataError(f"Hugging Face dataset {target}: not loadable ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:160]})") from None
    return _to_frame(loaded, split, spec)


def _to_frame(loaded, split: str | None, spec: str) -> pd.DataFrame:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if split is not None:
            if split not in loaded:
                raise DataError(f"{spec}: no split {split!r} (splits: {', '.join(sorted(loaded))}); "
                                "set data.hf_split")
            parts = [loaded[split].to_pandas()]
        else:
            parts = [loaded[name].to_pandas() for name in sorted(loaded)]
        frame = pd.concat(parts, ignore_index=True)
    else:
        frame = loaded.to_pandas()
    if frame.empty:
        raise DataError(f"{spec}: the dataset has no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame
