"""The configuration file and its environment overrides, as an operator meets them."""

from __future__ import annotations

from pathlib import Path

import pytest

from firstparty.config import DEFAULT_CONFIG_TEXT, ConfigError, load, parse


def test_the_default_file_is_valid_and_documents_the_contract_keys() -> None:
    config = parse(DEFAULT_CONFIG_TEXT, "firstparty.toml", env={})
    assert [s.domain for s in config.sites] == ["example.com"]
    p = config.privacy
    assert (p.ipv4_prefix, p.ipv6_prefix, p.raw_retention_days, p.aggregate_retention_months) == (
        24,
        48,
        30,
        25,
    )
    assert (p.honour_dnt, p.honour_gpc, p.min_visitors, p.visitor_id_rotation) == (
        True,
        True,
        1,
        "daily",
    )
    assert config.store == "chdb://./data/clickhouse"


def test_environment_overrides_the_file() -> None:
    env = {
        "FIRSTPARTY_PRIVACY_MIN_VISITORS": "5",
        "FIRSTPARTY_PRIVACY_HONOUR_DNT": "false",
        "FIRSTPARTY_SERVER_PORT": "9000",
        "FIRSTPARTY_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8",
        "FIRSTPARTY_STORE": "clickhouse://u:p@ch:8123/fp",
    }
    config = parse(DEFAULT_CONFIG_TEXT, "firstparty.toml", env=env)
    assert config.privacy.min_visitors == 5
    assert config.privacy.honour_dnt is False
    assert config.server.port == 9000
    assert config.server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    assert config.store == "clickhouse://u:p@ch:8123/fp"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            "[privacy]\nipv4_prefix = 32\n",
            {},
            "`privacy.ipv4_prefix` must be between 8 and 24, got 32",
        ),
        ("[privacy]\naggregate_retention_months = 36\n", {}, "CNIL maximum"),
        ("[privacy]\nhonour_dnt = 'maybe'\n", {}, "`privacy.honour_dnt` must be true or false"),
        ("[privacy]\nvisitor_id_rotation = 'yearly'\n", {}, "must be one of daily, weekly"),
        ("[privacy]\nipv4_prefx = 24\n", {}, "`privacy.ipv4_prefx` is not a known key; allowed:"),
        ("[sever]\nport = 1\n", {}, "`sever` is not a known section"),
        ("[server]\ntrusted_proxies = ['not-an-ip']\n", {}, "must hold IP addresses or CIDR"),
        ("[[site]]\nname = 'x'\n", {}, "`site.domain` is required"),
        ("[[site]]\ndomain = 'a.com'\n[[site]]\ndomain = 'a.com'\n", {}, "listed twice"),
        ("[[goal]]\nname = 'Signup'\n", {}, "needs exactly one of `event` or `page`"),
        ("store = 'mysql://db'\n", {}, "`store` store URL 'mysql://db' is not supported"),
        (
            "",
            {"FIRSTPARTY_SERVER_PORT": "eighty"},
            "FIRSTPARTY_SERVER_PORT` must be a whole number",
        ),
        ("[privacy\n", {}, "not valid TOML"),
    ],
)
def test_invalid_config_names_the_file_the_key_and_what_is_allowed(
    text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse(text, "/etc/firstparty.toml", env=env)
    assert message in str(excinfo.value)
    if "FIRSTPARTY_" not in message:
        assert str(excinfo.value).startswith("/etc/firstparty.toml")


def test_load_reads_the_file_named_by_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text("[[site]]\ndomain = 'Shop.Example.ORG'\n")
    config = load(env={"FIRSTPARTY_CONFIG": str(path)})
    assert [s.domain for s in config.sites] == ["shop.example.org"]
    with pytest.raises(ConfigError, match="config file not found; run `firstparty init`"):
        load(tmp_path / "missing.toml", env={})
