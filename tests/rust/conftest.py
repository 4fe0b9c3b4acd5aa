"""tokio-postgres through a pass-through pgseal: the shared ``relay`` of
tests/clients and the ``pgsealrs`` binary, built once per run."""

from tests.clients.conftest import relay
from tests.rust.rsbuild import rust_program

__all__ = ["relay", "rust_program"]
