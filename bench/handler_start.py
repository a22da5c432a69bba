#!/usr/bin/env python3
"""The handler's cold start: Python's start-up, `import app`, the S3 and Supabase clients.

Usage: handler_start.py              import app; app.s3(); app.supabase()
       handler_start.py --libraries  the libraries alone: import boto3 and supabase's
                                     database client (postgrest-py), and create one
                                     client of each (the bound of this stack)
       handler_start.py --check-hook  also connect once to a closed local port: the JSON
                                     line must list it (the instrument sees a connection)

What a Lambda container does before its first record gets to work (the clients are made
on first use, in the first invocation: billed too). The settings are Lambda-like dummies
(lambda_env.py). An audit hook records every socket connection and name lookup; the JSON
line printed last lists them ({"network": [...]}): creating the clients must need none,
or a cold start would wait on the network. `make bench` times the whole process.
"""

import sys

NETWORK = []  # what the process tried to reach: "socket.connect ('1.2.3.4', 443)", ...
LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")


def _record_network(event, args):
    if event == "socket.connect":
        NETWORK.append(f"{event} {args[1]!r}")
    elif event in LOOKUPS:
        NETWORK.append(f"{event} {args[0]!r}")


sys.addaudithook(_record_network)

import json  # noqa: E402
import os  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lambda_env  # noqa: E402

lambda_env.apply()


def handler_clients():
    import app

    app.s3()
    app.supabase()


def library_clients():
    import boto3
    from postgrest import SyncPostgrestClient

    boto3.client("s3")
    key = os.environ["SUPABASE_KEY"]
    SyncPostgrestClient(os.environ["SUPABASE_URL"] + "/rest/v1", headers={"apiKey": key, "Authorization": f"Bearer {key}"})


if __name__ == "__main__":
    library_clients() if "--libraries" in sys.argv else handler_clients()
    if "--check-hook" in sys.argv:  # the hook sees a connection: one to a closed local port
        import socket
        with socket.socket() as probe:
            probe.connect_ex(("127.0.0.1", 9))
    print(json.dumps({"network": NETWORK}), flush=True)
