"""A real S3 HTTP API on loopback (moto's server mode), for tests, benchmarks and chaos.

Reached through s3fs exactly as production does: only the endpoint differs. Nothing
here talks to any address outside 127.0.0.0/8.
"""

from __future__ import annotations

import os
import urllib.request
from contextlib import contextmanager

#: fake credentials for the loopback server; distinctive, so leak tests can search for them
FAKE_ACCESS_KEY = "AKIATOKENYARDTESTING"
FAKE_SECRET_KEY = "tokenyard-test-secret-do-not-leak-0123456789"

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: variables that would point a test at a real account or endpoint
AWS_ENV_REMOVED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                   "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN",
                   "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


class S3Server:
    """moto's threaded server on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> "S3Server":
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every bucket and object."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(client_kwargs={"endpoint_url": self.endpoint},
                                 use_listings_cache=False, skip_instance_cache=True)


@contextmanager
def s3_server():
    """A started server and the environment that points s3fs at it, for scripts."""
    saved = {k: os.environ.get(k) for k in (*AWS_ENV, *AWS_ENV_REMOVED)}
    os.environ.update(AWS_ENV)
    for k in AWS_ENV_REMOVED:
        os.environ.pop(k, None)
    server = S3Server().start()
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
