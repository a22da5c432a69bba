"""The environment Lambda gives the handler, with dummy values, for the bench's helpers
that create the S3 and Supabase clients as the handler does (warm.py, handler_start.py).

Credentials in the environment, where Lambda puts them, end botocore's credential chain at
its first provider: no ~/.aws files, no instance-metadata lookup (a 1 s timeout off EC2).
Nothing here reaches a server: creating the clients makes no connection (handler_start.py
checks it), and the bench never calls them.
"""

import base64
import os

DUMMY = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIABENCHDUMMYKEY000",
    "AWS_SECRET_ACCESS_KEY": "bench-dummy-secret-access-key-0000000000",
    "AWS_SESSION_TOKEN": "bench-dummy-session-token",
    "AWS_EC2_METADATA_DISABLED": "true",
    "S3_BUCKET_VIDEOS": "bench-videos",
    "S3_BUCKET_FRAMES": "bench-frames",
    "SUPABASE_URL": "https://benchdummyproject.supabase.co",
    # shaped like a service_role JWT (header.payload.signature); signed by no one
    "SUPABASE_KEY": ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in (
        b'{"alg":"HS256","typ":"JWT"}', b'{"role":"service_role"}', b"bench-dummy-signature")),
}


def apply(environ=os.environ):
    """Put the dummy settings into `environ` (before config.py is imported: a real
    environment wins over .env, so these win over a .env's real ones too)."""
    environ.update(DUMMY)
