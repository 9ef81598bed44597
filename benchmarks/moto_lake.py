"""moto's S3 server for the benchmarks' ``--lake s3`` mode (imported from the scripts' folder)."""

from __future__ import annotations

import json
import os


def start_moto_bucket(bucket: str) -> str:
    """moto's S3 server on a free loopback port with ``bucket``; this process and its children reach
    it through the environment (``AWS_*`` for s3fs, ``AIRFLOW_CONN_AWS_DEFAULT`` for the operator)."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "BENCH_LAKE": "s3",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    "login": "bench",
                    "password": "bench",
                    "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
                }
            ),
        }
    )
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return endpoint
