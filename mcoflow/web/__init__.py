"""The web console, the trigger page and the REST API (FastAPI)."""

from __future__ import annotations

from mcoflow.web.app import create_app
from mcoflow.web.auth import AuthSettings, hash_password, hash_token, new_api_token
from mcoflow.web.ports import JOB_KINDS, JobInputError, JobKind, JobsPort

__all__ = [
    "JOB_KINDS",
    "AuthSettings",
    "JobInputError",
    "JobKind",
    "JobsPort",
    "create_app",
    "hash_password",
    "hash_token",
    "new_api_token",
]
