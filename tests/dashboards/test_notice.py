"""The generated privacy notice and record of processing follow the live configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards.privacy import document, notice, records
from firstparty.cli import main
from firstparty.config import parse

DEFAULTS = '[[site]]\ndomain = "example.com"\n'
CHANGED = """
[[site]]
domain = "example.com"
[[goal]]
name = "Signup"
event = "Signup"
[privacy]
raw_retention_days = 7
aggregate_retention_months = 13
store_region = true
keep_ip_prefix = true
ipv4_prefix = 16
min_visitors = 5
honour_dnt = false
visitor_id_rotation = "weekly"
[server]
public_url = "https://stats.example.com"
"""


def render(text: str, lang: str = "en") -> str:
    return document.markdown(notice.notice(parse(text, env={}), lang))


def test_notice_states_the_default_configuration() -> None:
    text = render(DEFAULTS)
    assert text.startswith("## Analytics\n")
    assert "Detailed records of visits: 30 days" in text
    assert "no visitor code): 25 months" in text
    assert "Your country, derived from your IP address. Your IP address itself is not stored." in (
        text
    )
    assert "Global Privacy Control (GPC) or Do Not Track (DNT) signal" in text
    assert "[/optout](/optout)" in text
    assert "replaced every day" in text
    assert "fewer than" not in text  # k = 1: no suppression is promised
    assert "Google Analytics" not in text and "cookies" in text


def test_notice_follows_a_config_change() -> None:
    before, after = render(DEFAULTS), render(CHANGED)
    assert after != before
    assert "Detailed records of visits: 7 days" in after
    assert "no visitor code): 13 months" in after
    assert "Your country and region" in after
    assert "the first 16 bits of an IPv4 address, the first 48 bits" in after
    assert "fewer than 5 visitors" in after
    assert "Global Privacy Control (GPC) signal" in after and "Do Not Track" not in after
    assert "replaced every week" in after
    assert "(such as: Signup)" in after
    assert "[https://stats.example.com/optout](https://stats.example.com/optout)" in after


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("fr", ["## Mesure d'audience", "7 jours", "13 mois", "chaque semaine", "5 visiteurs"]),
        ("nl", ["## Bezoekersstatistieken", "7 dagen", "13 maanden", "elke week", "5 bezoekers"]),
    ],
)
def test_french_and_dutch_follow_the_config_too(lang: str, words: list[str]) -> None:
    text = render(CHANGED, lang)
    for word in words:
        assert word in text
    assert "https://stats.example.com/optout" in text


def test_cli_markdown_html_and_environment_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "firstparty.toml"
    config.write_text(CHANGED)
    assert main(["--config", str(config), "privacy-notice"]) == 0
    assert "7 days" in capsys.readouterr().out
    monkeypatch.setenv("FIRSTPARTY_PRIVACY_RAW_RETENTION_DAYS", "14")
    out = tmp_path / "notice.html"
    assert main(["--config", str(config), "privacy-notice", "--html", "--output", str(out)]) == 0
    html = out.read_text()
    assert html.startswith("<!doctype html>")
    assert "<h2>Analytics</h2>" in html and "14 days" in html
    assert '<a href="https://stats.example.com/optout">' in html
    assert main(["--config", str(config), "privacy-notice", "--lang", "nl"]) == 0
    assert "14 dagen" in capsys.readouterr().out


def test_records_of_processing_follow_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = records.record(parse(CHANGED, env={}), records.Controller(), "2026-01-01")
    text = document.markdown(blocks)
    assert "Raw events and sessions: 7 days; aggregates: 13 months" in text
    assert "Truncated IP network (/16 IPv4, /48 IPv6)" in text
    assert "k = 5" in text and "DNT off" in text
    assert "| **Controller** | (to complete by the controller) |" in text
    config = tmp_path / "firstparty.toml"
    config.write_text(DEFAULTS)
    assert main(["--config", str(config), "records", "--controller", "OpenS (ALLOcloud)"]) == 0
    out = capsys.readouterr().out
    assert "| **Controller** | OpenS (ALLOcloud) |" in out
    assert "No IP address or part of one." in out
    assert "Raw events and sessions: 30 days; aggregates: 25 months" in out
