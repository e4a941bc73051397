"""gridq doctor: the troubleshooting guides, automated.

Each family of checks has its module (redis_checks, hub_checks, node_checks,
task_checks); runner puts them together for the CLI (``gridq doctor``) and for the
hub (``GET /api/doctor``). This package imports neither gridq.hub nor gridq.node.
"""

from gridq.doctor.checks import Check
from gridq.doctor.runner import Options, exit_code, run_cli, run_server, summary
from gridq.doctor.task_checks import TaskInfo

__all__ = ["Check", "Options", "TaskInfo", "exit_code", "run_cli", "run_server", "summary"]
