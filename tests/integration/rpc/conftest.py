"""Registers the shared rpc fixtures for this directory."""

from tests.rpc_fixtures import collective, keys, lab, transport_url

__all__ = ["collective", "keys", "lab", "transport_url"]
