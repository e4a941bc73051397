"""Task env values that are secrets by their name (a signing key, a token): masked in
API answers like Redis URLs are. The nodes still get the real values."""

from __future__ import annotations

import re

from gridq.redisurl import mask_text

# NAME ends in KEY/TOKEN/SECRET/PASSWORD (GRIDQ_SIGNING_KEY, API_TOKEN, DB_PASSWORD...);
# *_FILE names a path, which is not secret.
SECRET_NAME = re.compile(r"(^|_)(KEY|KEYS|TOKEN|TOKENS|SECRET|PASSWORD|PASSWD|PASS)$")


def shown(name: str, value: str) -> str:
    """How an env value appears in an API answer."""
    if SECRET_NAME.search(name.upper()) and value:
        return "***"
    return mask_text(value)
