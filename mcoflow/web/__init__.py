"""The web console, the trigger page and the REST API (FastAPI).

Exported by audience: what builds the app (``create_app`` on a ``World``, with a
``JobsPort`` to start ``JobRequest``s through and the error it raises for the operator's input),
then what sets up its accounts and API tokens. Pages, routes and schemas are the app's own.
"""

from __future__ import annotations

from mcoflow.web.app import create_app
from mcoflow.web.auth import AuthSettings, hash_password, hash_token, new_api_token
from mcoflow.web.ports import JobInputError, JobRequest, JobsPort

__all__ = [
    # building the app
    "create_app",
    "JobsPort",
    "JobRequest",
    "JobInputError",
    # its accounts and API tokens
    "AuthSettings",
    "hash_password",
    "hash_token",
    "new_api_token",
]
