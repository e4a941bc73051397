"""Helpers shared by the tests and bench/: polling, ports, skips, Redis servers, and the
real `gridq hub` / `gridq node` processes of a stack.

Import as `from tests.support import wait_for` (see tests/__init__.py for the path)."""

from gridq.ports import free_port
from tests.support.polling import wait_for
from tests.support.redis_server import RedisServer, redis_server_binary
from tests.support.skips import need

__all__ = ["RedisServer", "free_port", "need", "redis_server_binary", "wait_for"]
