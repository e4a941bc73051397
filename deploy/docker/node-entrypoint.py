#!/opt/gridq/bin/python3
"""The node image's entrypoint: start as root, join the Docker socket's group, drop to
the agent's user, exec the command.

The socket's group differs between hosts (``docker``, with a gid of its own, on Debian;
0 on Docker Desktop), so the compose quick start cannot know it in advance: it is read
here, at start, from the socket itself. Stdlib only, as the healthcheck.
"""

from __future__ import annotations

import os
import pwd
import sys

USER = "gridq"


def socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    return host[len("unix://") :] if host.startswith("unix://") else "/var/run/docker.sock"


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: gridq-node-entrypoint COMMAND [ARG...]")
    if os.getuid() == 0:
        user = pwd.getpwnam(USER)
        groups = {user.pw_gid}
        try:
            groups.add(os.stat(socket_path()).st_gid)
        except OSError:
            pass  # no socket (another runtime, or a TCP DOCKER_HOST): the agent says so
        os.setgroups(sorted(groups))
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        os.environ["HOME"] = user.pw_dir
        os.environ["USER"] = USER
    # Started with `user:` (or --user) set: run as given, nothing to drop.
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
