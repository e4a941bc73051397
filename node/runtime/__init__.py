"""Runtimes the agent drives: Docker containers or local processes."""

from __future__ import annotations

from gridq.node.runtime.base import Instance, Observed, Runtime, StartFailed

__all__ = ["Instance", "Observed", "Runtime", "StartFailed"]
