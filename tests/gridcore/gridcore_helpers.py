"""Tokens shared by the GridCore tests (a plain module: tests/ has no packages)."""

ADMIN = "adm-GridCoreReplay-7f3kQ9xZ"
JOIN = "join-GridCoreReplay-Hq82nVx"

# A gridq node (docker runtime), next to the GridNodes.
GQ_INFO = {
    "hostname": "gq",
    "arch": "linux/amd64",
    "cpus": 2,
    "memory_mb": 4000,
    "runtime": "docker",
    "parallelism": 2,
    "version": "0.1.0",
}
