"""The core seams the parts share (gridq/contract.py, platform.py, outage.py, errors.py)
and that the parts use them rather than copies."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil

import pytest

from gridq import contract
from gridq.errors import GridqError
from gridq.outage import OutageLog
from gridq.platform import norm_arch, same_platform


def test_outage_logs_once_down_and_once_up(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("gridq.test-outage")
    outage = OutageLog(log, up_level=logging.INFO, up_message="back after %.1f s")
    with caplog.at_level(logging.INFO, logger=log.name):
        assert outage.up() is None  # no outage: nothing logged
        assert outage.down("redis://:hunter2@db:6379/0 refused")
        assert not outage.down("refused again")
        assert outage.is_down
        took = outage.up()
        assert outage.up() is None
    assert took is not None and not outage.is_down
    assert (outage.outages, outage.recoveries) == (1, 1)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0][0] == logging.WARNING and "hunter2" not in lines[0][1]
    assert lines[1][0] == logging.INFO and lines[1][1].startswith("back after ")


@pytest.mark.parametrize(
    ("spelling", "arch"),
    [("x86_64", "amd64"), ("linux/amd64", "amd64"), ("aarch64", "arm64"), ("armhf", "arm"),
     ("i686", "386"), ("Linux/ARM64", "arm64"), ("mips64", "mips64")],
)  # fmt: skip
def test_one_architecture_table(spelling: str, arch: str) -> None:
    from gridq.doctor import node_checks
    from gridq.hub import scheduler
    from gridq.node.runtime import docker_rt

    assert norm_arch(spelling) == arch
    # The hub's placement, the node's docker runtime and the doctor use this one function.
    assert scheduler.norm_arch is docker_rt.norm_arch is node_checks.norm_arch is norm_arch
    assert same_platform("linux/arm64/v8", "linux/arm64")


def test_hub_and_worker_share_the_pool_names_and_the_reserved_env() -> None:
    from gridq.hub.models import RESERVED_ENV, TaskSpec
    from gridq.worker.settings import WorkerSettings

    assert set(contract.WORKER_ENV) == RESERVED_ENV
    for field in (TaskSpec.model_fields["pool"], WorkerSettings.model_fields["worker_pool"]):
        assert field.annotation == contract.PoolName


@pytest.mark.parametrize("part", ["gridq.hub", "gridq.node", "gridq.worker"])
def test_every_exception_of_a_part_is_a_gridq_error(part: str) -> None:
    package = importlib.import_module(part)
    own: list[type] = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{part}."):
        if info.name.startswith("gridq.worker.celery"):
            continue  # the Celery adapter needs celery installed; it defines none
        module = importlib.import_module(info.name)
        own += [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, Exception) and c.__module__ == info.name
        ]
    stray = sorted(c.__qualname__ for c in own if not issubclass(c, GridqError))
    assert not stray, f"exceptions of {part} outside gridq.errors: {stray}"
