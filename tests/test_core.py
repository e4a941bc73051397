"""The shared core: URL masking, wire format, keys, Queue, settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import ClassVar

import pytest

from gridq import keys, protocol, redisurl
from gridq.errors import ConfigError, RedisAuthError, RedisUnavailable
from gridq.queue import Queue

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:s3cret@host", "redis://:***@host"),
        ("rediss://s3cret@host:6380", "rediss://***@host:6380"),
        ("redis://host:6379", "redis://host:6379"),
        ("", ""),
    ],
)
def test_mask(url: str, masked: str) -> None:
    assert redisurl.mask(url) == masked


def test_mask_text_masks_every_url_and_secret() -> None:
    text = "failed redis://:pw1@a:1 then redis://u:pw2@b token=tok"
    out = redisurl.mask_text(text, ["tok"])
    assert "pw1" not in out and "pw2" not in out and "tok" not in out.replace("token", "")


def test_envelope_roundtrip() -> None:
    item = protocol.encode("add", [1, 2], {"z": 3}, retries=2, priority=4)
    job = protocol.decode(item)
    assert (job.task, job.args, job.kwargs, job.retries, job.priority, job.attempt) == (
        "add",
        [1, 2],
        {"z": 3},
        2,
        4,
        0,
    )
    again = protocol.decode(protocol.with_attempt(job, 1))
    assert again.id == job.id and again.attempt == 1


@pytest.mark.parametrize(
    "item", [b"42", b"hello", b"\xff\x00", b"{not json", b'{"a": 1}', b"[1,2]", b""]
)
def test_raw_items_pass_unchanged(item: bytes) -> None:
    job = protocol.decode(item)
    assert job.is_raw and job.raw == item and job.task is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"gridq": 2, "id": "x", "task": "t"}, "version"),
        ({"gridq": 1, "task": "t"}, "'id'"),
        ({"gridq": 1, "id": "x", "task": "t", "args": {}}, "'args'"),
        ({"gridq": 1, "id": "x", "task": "t", "kwargs": []}, "'kwargs'"),
        ({"gridq": 1, "id": "x", "task": 5}, "'task'"),
        ({"gridq": 1, "id": "x", "task": "t", "attempt": -1}, "'attempt'"),
        ({"gridq": 1, "id": "x", "raw": "!!"}, "'raw'"),
        ({"gridq": 1, "id": "x", "task": "t", "priority": 99}, "'priority'"),
    ],
)
def test_malformed_envelopes_name_the_problem(body: dict, field: str) -> None:
    with pytest.raises(protocol.MalformedJob, match=re.escape(field)):
        protocol.decode(json.dumps(body).encode())


def test_raw_retry_keeps_bytes() -> None:
    job = protocol.decode(b"\x00\xffbinary")
    again = protocol.decode(protocol.with_attempt(job, 1))
    assert again.raw == b"\x00\xffbinary" and again.attempt == 1


def test_raw_result_forms() -> None:
    assert protocol.raw_result(None) is None
    assert protocol.raw_result(b"x") == b"x"
    assert protocol.raw_result("é") == "é".encode()
    assert protocol.raw_result({"a": 1}) == b'{"a":1}'


def test_every_key_is_documented() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    missing = [k for k in keys.all_documented() if f"`{k}`" not in doc]
    assert not missing, f"docs/protocol.md does not name: {missing}"


def test_queue_enqueue_stats_and_dead_letters(redis_conn, redis_url: str) -> None:
    q = Queue.from_url(redis_url, "core-q")
    jid = q.enqueue("add", 2, 3)
    q.push_raw("a", "b")
    q.enqueue("urgent", _priority=5)
    q.enqueue("later", _delay=60)
    s = q.stats()
    assert s["depth"] == 4 and s["delayed"] == 1 and s["in_flight"] == 0 and s["dead"] == 0
    assert s["processed"] == 0 and s["failed"] == 0
    # FIFO: the first pushed is at the right end, where workers take from.
    first = protocol.decode(redis_conn.lindex("core-q", -1))
    assert first.id == jid
    redis_conn.lpush(
        q.keys.dead,
        protocol.dead_record(
            b"\xffraw", job_id="j", task=None, reason="r", error_type="E", message="m"
        ),
    )
    assert q.dead_letters()[0]["error_type"] == "E"
    assert q.retry_dead() == 1
    assert redis_conn.lindex("core-q", 0) == b"\xffraw"
    assert q.stats()["dead"] == 0
    redis_conn.lpush(q.keys.dead, b"x")
    assert q.purge_dead() == 1


def test_check_names_auth_problems(make_redis) -> None:
    srv = make_redis("right-pw")
    base = f"127.0.0.1:{srv.port}"
    with pytest.raises(RedisAuthError, match="WRONGPASS") as e1:
        redisurl.check(f"redis://:wrong-pw@{base}")
    assert "wrong-pw" not in str(e1.value)
    with pytest.raises(RedisAuthError, match="NOAUTH"):
        redisurl.check(f"redis://{base}")
    redisurl.check(f"redis://:right-pw@{base}")
    # Redis without requirepass accepts a URL that gives one (redis-py tolerates it);
    # gridq doctor warns about it instead.
    open_srv = make_redis(None)
    redisurl.check(f"redis://:given-pw@127.0.0.1:{open_srv.port}")


def test_check_names_unreachable() -> None:
    from tests.support import free_port

    with pytest.raises(RedisUnavailable, match="refused"):
        redisurl.check(f"redis://:pw@127.0.0.1:{free_port()}", timeout=1)
    with pytest.raises(RedisUnavailable, match="resolve"):
        redisurl.check("redis://:pw@no-such-host.invalid:6379", timeout=1)


def test_settings_precedence_and_unknown_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gridq.settings import GridqSettings, load

    class Demo(GridqSettings):
        toml_section: ClassVar[str] = "demo"
        toml_aliases: ClassVar[dict[str, str]] = {"server_url": "url"}
        url: str = "default"
        size: int = 1

    cfg = tmp_path / "c.toml"
    cfg.write_text('[demo]\nserver_url = "toml"\nsize = 2\n')
    assert load(Demo, cfg).url == "toml"
    monkeypatch.setenv("GRIDQ_URL", "env")
    assert load(Demo, cfg).url == "env" and load(Demo, cfg).size == 2
    assert load(Demo, cfg, url="flag").url == "flag"
    cfg.write_text("[demo]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load(Demo, cfg)
    monkeypatch.setenv("GRIDQ_SIZE", "not-a-number")
    with pytest.raises(ConfigError, match="size"):
        load(Demo)


def test_packages_listed_in_pyproject() -> None:
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set()
    for top, pkg in (
        ("gridq", "gridq"),
        ("hub", "gridq.hub"),
        ("node", "gridq.node"),
        ("worker", "gridq.worker"),
    ):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((pkg, *rel)))
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"


def test_settings_aliases_and_extra_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A field with an environment alias takes its TOML key and flag by field name too."""
    from pydantic import Field

    from gridq.settings import GridqSettings, load

    class Demo(GridqSettings):
        toml_section: ClassVar[str] = "demo"
        env_extra: ClassVar[dict[str, str]] = {"shared": "SHARED_VAR"}
        hub_url: str = Field("default", validation_alias="GRIDQ_HUB_URL")
        shared: str = "default"

    cfg = tmp_path / "c.toml"
    cfg.write_text('[demo]\nhub_url = "toml"\nshared = "toml"\n')
    assert (load(Demo, cfg).hub_url, load(Demo, cfg).shared) == ("toml", "toml")
    monkeypatch.setenv("GRIDQ_HUB_URL", "env")
    monkeypatch.setenv("SHARED_VAR", "env")
    assert (load(Demo, cfg).hub_url, load(Demo, cfg).shared) == ("env", "env")
    assert load(Demo, cfg, hub_url="flag", shared="flag").hub_url == "flag"
    assert load(Demo, cfg, shared="flag").shared == "flag"


SECRET_VARS = (
    "GRIDQ_HUB_TOKEN",
    "GRIDQ_NODE_TOKEN",
    "GRIDQ_HUB_VIEWER_TOKEN",
    "GRIDQ_HUB_NODE_TOKEN",
    "GRIDQ_HUB_REDIS_URL",
    "GRIDQ_HUB_REDIS_PASSWORD",
    "INPUT_REDIS_URL",
    "OUTPUT_REDIS_URL",
    "GRIDQ_REDIS_URL",
    "GRIDQ_CONFIG",
)


@pytest.fixture
def clean_secret_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in SECRET_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(f"{var}_FILE", raising=False)
    return monkeypatch


def _secret_file(tmp_path: Path, name: str, value: str) -> Path:
    p = tmp_path / name
    p.write_text(value + "\n")  # as `echo value > file` writes it
    return p


def test_secret_settings_read_var_file(
    tmp_path: Path, clean_secret_env: pytest.MonkeyPatch
) -> None:
    """<VAR>_FILE for every secret setting: the file's content, trailing newline stripped;
    it ranks with the environment (over TOML, under a flag)."""
    from gridq.hub.config import HubSettings
    from gridq.node.config import NodeSettings
    from gridq.settings import load, secret_env
    from gridq.worker.settings import WorkerSettings

    mp = clean_secret_env
    assert secret_env(HubSettings) == {
        "redis_url": "GRIDQ_HUB_REDIS_URL",
        "redis_password": "GRIDQ_HUB_REDIS_PASSWORD",
        "token": "GRIDQ_HUB_TOKEN",
        "viewer_token": "GRIDQ_HUB_VIEWER_TOKEN",
        "node_token": "GRIDQ_NODE_TOKEN",
    }
    assert secret_env(NodeSettings) == {"node_token": "GRIDQ_NODE_TOKEN"}
    assert secret_env(WorkerSettings) == {
        "input_url": "INPUT_REDIS_URL",
        "output_url": "OUTPUT_REDIS_URL",
        "signing_key": "GRIDQ_SIGNING_KEY",
    }
    hub_tok, node_tok = "hubTokMarker-7f3a9c2e41", "nodeTokMarker-0b8d6e5f93"
    url = "redis://:urlPwMarker@redis:6379/0"
    mp.setenv("GRIDQ_HUB_TOKEN_FILE", str(_secret_file(tmp_path, "hub", hub_tok)))
    mp.setenv("GRIDQ_NODE_TOKEN_FILE", str(_secret_file(tmp_path, "node", node_tok)))
    mp.setenv("GRIDQ_HUB_REDIS_URL_FILE", str(_secret_file(tmp_path, "url", url)))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[hub]\ntoken = "from-toml-0123456789"\n[node]\ntoken = "from-toml-x"\n')
    hub = load(HubSettings, cfg)
    assert (hub.admin_token(), hub.join_token(), hub.redis_url) == (hub_tok, node_tok, url)
    assert load(NodeSettings, cfg).token() == node_tok
    assert load(HubSettings, cfg, redis_url="redis://flag:6379").redis_url == "redis://flag:6379"
    # An empty variable next to its _FILE is "not set" (compose writes VAR= for unset).
    mp.setenv("GRIDQ_HUB_TOKEN", "")
    assert load(HubSettings).admin_token() == hub_tok
    # The worker's URLs (outside the node, e.g. under systemd) take files too.
    mp.setenv("INPUT_REDIS_URL_FILE", str(_secret_file(tmp_path, "in", url)))
    w = load(WorkerSettings)
    assert (w.input_url, w.output_url) == (url, url)


def test_secret_var_and_file_both_set_is_an_error(
    tmp_path: Path, clean_secret_env: pytest.MonkeyPatch
) -> None:
    from gridq.hub.config import HubSettings
    from gridq.node.config import NodeSettings
    from gridq.settings import env_secret, load

    mp = clean_secret_env
    in_env, in_file = "envTokMarker-5c1d2e3f4a", "fileTokMarker-9e8d7c6b5a"
    mp.setenv("GRIDQ_NODE_TOKEN", in_env)
    mp.setenv("GRIDQ_NODE_TOKEN_FILE", str(_secret_file(tmp_path, "node", in_file)))
    for call in (lambda: load(HubSettings), lambda: load(NodeSettings)):
        with pytest.raises(ConfigError) as e:
            call()
        msg = str(e.value)
        assert "GRIDQ_NODE_TOKEN and GRIDQ_NODE_TOKEN_FILE" in msg
        assert in_env not in msg and in_file not in msg
    mp.setenv("GRIDQ_HUB_TOKEN", in_env)
    mp.setenv("GRIDQ_HUB_TOKEN_FILE", str(tmp_path / "node"))
    with pytest.raises(ConfigError, match="GRIDQ_HUB_TOKEN and GRIDQ_HUB_TOKEN_FILE"):
        env_secret("GRIDQ_HUB_TOKEN")


def test_secret_file_missing_or_unreadable_is_an_error(
    tmp_path: Path, clean_secret_env: pytest.MonkeyPatch
) -> None:
    from gridq.hub.config import HubSettings
    from gridq.settings import env_secret, load

    mp = clean_secret_env
    missing = tmp_path / "no-such-secret"
    mp.setenv("GRIDQ_HUB_TOKEN_FILE", str(missing))
    with pytest.raises(ConfigError) as e:
        load(HubSettings)
    assert "GRIDQ_HUB_TOKEN_FILE" in str(e.value) and str(missing) in str(e.value)
    assert "No such file" in str(e.value)
    # The secret itself put into the _FILE variable by mistake: not echoed.
    mp.setenv("GRIDQ_HUB_TOKEN_FILE", "tokenNotAPathMarker0042")
    with pytest.raises(ConfigError) as e:
        load(HubSettings)
    assert "GRIDQ_HUB_TOKEN_FILE" in str(e.value) and "NotAPathMarker" not in str(e.value)
    # A folder (a compose secret mounted wrong) cannot be read either.
    mp.setenv("GRIDQ_HUB_TOKEN_FILE", str(tmp_path))
    with pytest.raises(ConfigError, match="GRIDQ_HUB_TOKEN_FILE: cannot read"):
        load(HubSettings)
    # Binary junk: named, not echoed.
    junk = tmp_path / "junk"
    junk.write_bytes(b"\xffjunkMarker\xfe")
    mp.setenv("GRIDQ_REDIS_URL_FILE", str(junk))
    with pytest.raises(ConfigError) as e:
        env_secret("GRIDQ_REDIS_URL")
    assert "GRIDQ_REDIS_URL_FILE" in str(e.value) and "junkMarker" not in str(e.value)


def test_hub_redis_password_merges_into_the_url(
    tmp_path: Path, clean_secret_env: pytest.MonkeyPatch
) -> None:
    """compose's way: a plain GRIDQ_HUB_REDIS_URL plus the password from a secret file."""
    import redis as redis_py

    from gridq.hub.config import HubSettings, with_password
    from gridq.settings import load

    mp = clean_secret_env
    pw = "pw@with:odd/chars%"
    mp.setenv("GRIDQ_HUB_REDIS_URL", "redis://redis:6379/0")
    mp.setenv("GRIDQ_HUB_REDIS_PASSWORD_FILE", str(_secret_file(tmp_path, "pw", pw)))
    url = load(HubSettings).redis_url
    kw = redis_py.Redis.from_url(url).connection_pool.connection_kwargs
    assert (kw["password"], kw["host"], kw["db"]) == (pw, "redis", 0)
    assert redisurl.mask(url) == "redis://:***@redis:6379/0"
    assert with_password("rediss://alice:@h:6380/1", "p") == "rediss://alice:p@h:6380/1"
    # A lone userinfo may be read as the password (redisurl.mask treats it so): refused.
    with pytest.raises(ValueError, match="already carries"):
        with_password("redis://alice@h", "p")
    # Two passwords: one of them is stale. Refused, neither one echoed.
    mp.setenv("GRIDQ_HUB_REDIS_URL", "redis://:oldPwMarker@redis:6379/0")
    with pytest.raises(ConfigError) as e:
        load(HubSettings)
    assert "already carries a password" in str(e.value)
    assert "oldPwMarker" not in str(e.value) and pw not in str(e.value)


def test_cli_reads_token_and_redis_url_files(
    tmp_path: Path, clean_secret_env: pytest.MonkeyPatch
) -> None:
    from gridq.cli.common import hub_location, redis_location

    mp = clean_secret_env
    mp.setenv("GRIDQ_HUB_URL", "http://hub:8080")
    mp.setenv("GRIDQ_HUB_TOKEN_FILE", str(_secret_file(tmp_path, "t", "cliTokMarker-1a2b3c")))
    mp.setenv("GRIDQ_REDIS_URL_FILE", str(_secret_file(tmp_path, "u", "redis://:p@h:6379")))
    assert hub_location() == ("http://hub:8080", "cliTokMarker-1a2b3c")
    assert redis_location() == "redis://:p@h:6379"
