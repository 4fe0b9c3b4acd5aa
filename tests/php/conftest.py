"""PDO through a pass-through pgseal: the ``relay`` of tests/clients."""

from tests.clients.conftest import relay

__all__ = ["relay"]
