"""Key layout 2 and the cluster/sentinel URL forms, without a server."""

from __future__ import annotations

import pytest

from gridq import keys
from gridq.redisurl import key_slot, mask, mask_text, parse_multi, password_of, validate_url


def test_every_key_of_a_queue_is_in_the_slot_of_the_bare_list() -> None:
    for name in ["jobs", "a:b:c", "Ünïcode-q", "x" * 300]:
        k = keys.QueueKeys(name)
        names = [k.pending, k.delayed, k.dead, k.stats, k.consumers, k.last_claim, k.paused]
        names += [k.priority(p) for p in range(1, 10)] + [k.inflight("c1"), k.alive("c1")]
        names += [k.scheduled("sched:s:1")]
        assert {key_slot(n) for n in names} == {key_slot(name)}
        assert all(keys.queue_of(n) == name for n in names[1:])


def test_hub_keys_share_one_slot() -> None:
    hub = [n for n in keys.all_documented() if n.startswith(keys.HUB)]
    constants = {v for k, v in vars(keys).items() if k.startswith("HUB_") and isinstance(v, str)}
    # Every hub key constant is documented, and all of them hash to the one slot.
    assert constants and constants <= set(hub)
    assert len({key_slot(n) for n in hub}) == 1


@pytest.mark.parametrize("name", ["a{b}", "{x}", "}", "", "q{"])
def test_queue_names_with_braces_or_empty_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        keys.QueueKeys(name)


def test_cluster_and_sentinel_urls_parse_and_mask() -> None:
    c = parse_multi("rediss+cluster://:pw1@h1:7000,h2:7001")
    assert c and c.kind == "cluster" and c.tls and c.hosts == (("h1", 7000), ("h2", 7001))
    s = parse_multi("redis+sentinel://user:pw2@s1:26379,s2:26379/main/3")
    assert s and (s.kind, s.master, s.db, s.username) == ("sentinel", "main", 3, "user")
    assert password_of("redis+sentinel://user:pw2@s1:26379/main") == "pw2"
    assert mask("redis+cluster://:pw1@h1:7000,h2:7001") == "redis+cluster://:***@h1:7000,h2:7001"
    text = mask_text("down: rediss+sentinel://u:pw2@s1:1/m and redis+cluster://pw3@h:1")
    assert "pw2" not in text and "pw3" not in text and text.count("***") == 2
    assert parse_multi("redis://h:1") is None


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://:pw9@h1",
        "redis+cluster://:pw9@h1:7000/2",
        "redis+sentinel://:pw9@h1:26379",
        "redis+sentinel://:pw9@h1:26379/m/x",
        "redis+cluster://:pw9@h1:99999",
        "redis+cluster://:pw9@h1:7000?x=1",
        "redis+cloud://:pw9@h1:7000",
    ],
)
def test_bad_multi_host_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(ValueError) as err:
        validate_url(url)
    assert "pw9" not in str(err.value)
