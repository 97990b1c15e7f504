"""Drives the official Infisical Python SDK (PyPI package `infisicalsdk`)
against a tokengate gateway, for tests/sdk.rs.

Only the SDK's public API is used, the way an Infisical user would use it
with a Token Auth access token:

    client = InfisicalSDKClient(host=URL, cache_ttl=None)
    client.auth.token_auth.login(TOKEN)               # or InfisicalSDKClient(host=URL, token=TOKEN)
    client.secrets.list_secrets(environment_slug=..., secret_path="/", project_id=PROJECT)
    client.secrets.get_secret_by_name(secret_name=..., environment_slug=..., secret_path="/", project_id=PROJECT)
    client.secrets.create_secret_by_name / update_secret_by_name / delete_secret_by_name(...)

Input comes from the environment, so the token never shows in `ps`:
    TOKENGATE_URL          the gateway's base URL (the SDK's `host`)
    TOKENGATE_TOKEN        a Token Auth access token
    TOKENGATE_PROJECT_ID   the project (workspace) id
    TOKENGATE_ENVIRONMENT  environment slug (default "dev")

Usage: sdk_client.py version | list | get NAME... | write

Output: one JSON object on stdout, always with "sdkVersion":
    version  -> {"sdkVersion"}
    list     -> {"sdkVersion", "secrets": [{secretKey, secretValue, workspace, environment, secretPath}]}
    get NAME... -> the same, one get_secret_by_name call per NAME, in order,
                   on one client (so one keep-alive session)
    write       -> the same, for create_secret_by_name("PROJECT_ROLE"),
                   update_secret_by_name("IDENTITY"), then
                   delete_secret_by_name("PROJECT_ROLE"), each with an "op"
                   field; these send the project id in the JSON body only
An error answer from the gateway, raised by the SDK as APIError, prints
{"sdkVersion", "error": {"statusCode", "message", "response"}} and exits 3.
Anything else (a model the SDK cannot parse, a network failure) is a
traceback on stderr and exit status 1.
"""

import json
import os
import sys
from importlib.metadata import version as dist_version

from infisical_sdk import InfisicalSDKClient
from infisical_sdk.infisical_requests import APIError

EXIT_API_ERROR = 3


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def secret_view(secret):
    # Attribute access on the SDK's BaseSecret model: proves the answer was
    # parsed into it, not merely received.
    return {
        "secretKey": secret.secretKey,
        "secretValue": secret.secretValue,
        "workspace": secret.workspace,
        "environment": secret.environment,
        "secretPath": secret.secretPath,
    }


def main(argv):
    sdk_version = dist_version("infisicalsdk")
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    mode = argv[1]
    if mode == "version":
        emit({"sdkVersion": sdk_version})
        return 0

    host = os.environ["TOKENGATE_URL"]
    token = os.environ["TOKENGATE_TOKEN"]
    project_id = os.environ["TOKENGATE_PROJECT_ID"]
    environment = os.environ.get("TOKENGATE_ENVIRONMENT", "dev")

    try:
        if mode == "list":
            # Token Auth as Infisical documents it for the SDK: a client
            # without credentials, then token_auth.login with the token.
            # cache_ttl=None: every call must reach the gateway.
            client = InfisicalSDKClient(host=host, cache_ttl=None)
            client.auth.token_auth.login(token)
            try:
                answer = client.secrets.list_secrets(
                    environment_slug=environment,
                    secret_path="/",
                    project_id=project_id,
                )
            finally:
                client.close()
            emit(
                {
                    "sdkVersion": sdk_version,
                    "secrets": [secret_view(s) for s in answer.secrets],
                }
            )
        elif mode == "get" and len(argv) > 2:
            # The other way in: the token handed to the constructor.
            client = InfisicalSDKClient(host=host, token=token, cache_ttl=None)
            try:
                secrets = [
                    client.secrets.get_secret_by_name(
                        secret_name=name,
                        environment_slug=environment,
                        secret_path="/",
                        project_id=project_id,
                    )
                    for name in argv[2:]
                ]
            finally:
                client.close()
            emit(
                {
                    "sdkVersion": sdk_version,
                    "secrets": [secret_view(s) for s in secrets],
                }
            )
        elif mode == "write":
            client = InfisicalSDKClient(host=host, token=token, cache_ttl=None)
            where = {
                "secret_path": "/",
                "environment_slug": environment,
                "project_id": project_id,
            }
            try:
                created = client.secrets.create_secret_by_name(
                    secret_name="PROJECT_ROLE", secret_value="written-by-sdk", **where
                )
                updated = client.secrets.update_secret_by_name(
                    current_secret_name="IDENTITY", secret_value="updated-by-sdk", **where
                )
                deleted = client.secrets.delete_secret_by_name(
                    secret_name="PROJECT_ROLE", **where
                )
            finally:
                client.close()
            emit(
                {
                    "sdkVersion": sdk_version,
                    "secrets": [
                        dict(secret_view(secret), op=op)
                        for op, secret in [
                            ("create", created),
                            ("update", updated),
                            ("delete", deleted),
                        ]
                    ],
                }
            )
        else:
            sys.stderr.write(__doc__)
            return 2
    except APIError as e:
        emit(
            {
                "sdkVersion": sdk_version,
                "error": {
                    "statusCode": e.status_code,
                    "message": e.response.get("message") if isinstance(e.response, dict) else None,
                    "response": e.response,
                },
            }
        )
        return EXIT_API_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
