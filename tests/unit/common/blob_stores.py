"""What the blob store tests store and where: a synthetic study, S3 clients for moto's server."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

STUDY = b"\x00" * 128 + b"DICM" + b"synthetic pixel data" * 100


def make_client(endpoint: str, **config: Any) -> Any:
    """An S3 client for ``endpoint`` with moto's test credentials and path-style addressing."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}, **config),
    )
