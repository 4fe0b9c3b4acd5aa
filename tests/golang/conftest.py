"""Go's drivers through a pass-through pgseal: the shared ``relay`` of tests/clients
and the ``pgsealgo`` binary, built once per run."""

from tests.clients.conftest import relay
from tests.golang.gobuild import go_program

__all__ = ["go_program", "relay"]
