"""Which brokers and collective a stomp+mcollective:// URL names."""

from __future__ import annotations

import pytest

from mcoflow.rpc.mcollective.options import McollectiveOptions
from mcoflow.rpc.transports import transport_from_url
from mcoflow.rpc.transports.mcollective import McollectiveTransport, parse_mcollective_url

URL = "stomp+mcollective://mcollective:mar%40ionette@broker1:61614/%2Fmcollective?collective=eu"


def test_the_url_names_brokers_vhost_credentials_and_collective() -> None:
    parsed = parse_mcollective_url(URL + ",stomp+mcollective://u:p@broker2?collective=eu")
    first, second = parsed.servers
    assert (first.host, first.port, first.vhost) == ("broker1", 61614, "/mcollective")
    assert (first.login, first.passcode, first.ssl) == ("mcollective", "mar@ionette", None)
    assert (second.host, second.port, second.vhost) == ("broker2", 61613, "/")
    assert parsed.collective == "eu"


def test_the_collective_defaults_to_mcollectives_own() -> None:
    assert parse_mcollective_url("stomp+mcollective://h").collective == "mcollective"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("stomp+mcollective:///vhost", "names no broker host"),
        ("stomp+mcollective://h?collective=a/b", "not a plain name"),
        ("stomp+mcollective://h?colective=x", "unknown parameter 'colective'"),
        (
            "stomp+mcollective://a?collective=x,stomp+mcollective://b?collective=y",
            "different collectives",
        ),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mcollective_url(url)


def test_transport_from_url_picks_the_mcollective_transport() -> None:
    transport = transport_from_url(URL, mcollective=McollectiveOptions(psk="s", callerid="user=x"))
    assert isinstance(transport, McollectiveTransport)
    assert transport.collective == "eu"
    assert transport.options.resolved_callerid() == "user=x"


def test_the_callerid_defaults_to_the_uid_as_mco_sends_it() -> None:
    import os

    assert McollectiveOptions(psk="s").resolved_callerid() == f"uid={os.getuid()}"
