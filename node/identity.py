"""The node's identity on disk: hub-assigned node id and secret, plus a local agent id.

The secret authenticates heartbeats, so the file is written 0600 in a 0700 directory.
``agent_id`` never changes for a state dir: containers are labelled with it, so a
restarted agent finds (adopts) its workers even after the hub gave it a new node id.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

FILE = "identity.json"


@dataclass
class Identity:
    agent_id: str
    hub_url: str = ""
    node_id: str | None = None
    secret: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"Identity(agent_id={self.agent_id!r}, node_id={self.node_id!r})"


class IdentityStore:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / FILE

    def ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):
            os.chmod(self.dir, 0o700)

    def load(self) -> Identity:
        try:
            data = json.loads(self.path.read_text())
            return Identity(
                agent_id=str(data["agent_id"]),
                hub_url=str(data.get("hub_url") or ""),
                node_id=data.get("node_id"),
                secret=data.get("secret"),
            )
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            ident = Identity(agent_id=secrets.token_hex(6))
            self.save(ident)
            return ident

    def save(self, ident: Identity) -> None:
        self.ensure_dir()
        tmp = self.path.with_suffix(".tmp")
        # Create with 0600 from the start: a umask-default file would expose the secret
        # for the moment between open and chmod.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(ident), f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
