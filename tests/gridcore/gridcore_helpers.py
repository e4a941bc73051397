"""Tokens shared by the GridCore tests (a plain module: tests/ has no packages)."""

ADMIN = "adm-GridCoreReplay-7f3kQ9xZ"
JOIN = "join-GridCoreReplay-Hq82nVx"
