"""digest check of the From domain's DNS (SPF, DMARC, the DKIM key) and SpamAssassin's score.

The DNS answers come from a tiny server on 127.0.0.1 (tests/dns_server.py), asked by the
real resolver through ``check.nameservers``; SpamAssassin is the real one, installed by
``make test``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.checks.domain import TxtAnswer, aligned, dmarc_check, dmarc_names, spf_check
from digest.checks.spam import check_spam, spam_check
from digest.cli import cli
from tests.dns_server import DnsServer, Silent

DOMAIN = "news.digest-check-tests.net"
ORG = "digest-check-tests.net"
SPF = "v=spf1 include:_spf.relay.digest-check-tests.net ~all"
DMARC = "v=DMARC1; p=quarantine; rua=mailto:dmarc@digest-check-tests.net"
# Outbox only: these tests are about the DNS, not the relay.
READY = {
    "DIGEST_FROM_ADDRESS": f"digest@{DOMAIN}",
    "DIGEST_POSTAL_ADDRESS": "1 Test Street, Testtown",
    "DIGEST_PUBLIC_URL": f"https://{DOMAIN}",
    "DIGEST_SECRET_KEY": "check-test-key-of-at-least-32-characters",
}
SPAMASSASSIN = shutil.which("spamassassin") or shutil.which("spamc")
needs_spamassassin = pytest.mark.skipif(
    SPAMASSASSIN is None and not os.environ.get("CI"),
    reason="SpamAssassin is not installed (make test installs it where it can)",
)
# SpamAssassin's own test pattern (GTUBE): any message carrying it scores 1000.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def run(env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, ["check"], prog_name="digest", env=env)


def lines(result: Result) -> dict[str, str]:
    return {line.split()[1].rstrip(":"): line for line in result.stdout.splitlines()}


def dkim_key(directory: Path, name: str = "dkim.pem") -> tuple[Path, str]:
    """A new RSA key made as an operator would (openssl), and its DNS record."""
    key = directory / name
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


@pytest.mark.parametrize(
    ("records", "status", "words"),
    [
        ([SPF], "ok", SPF),
        (["v=spf1 redirect=_spf.relay.example.net"], "ok", "redirect="),
        (["google-site-verification=abc"], "FAIL", "no SPF record at"),
        ([SPF, "v=spf1 ip4:192.0.2.1 -all"], "FAIL", "2 SPF records"),
        (["v=spf1 -all"], "FAIL", "allows no server to send"),
        (["v=spf1 include:relay.example.net +all"], "warn", "every server in the world"),
        (["V=SPF1 ip4:192.0.2.0/24 -all"], "ok", "ip4:"),
    ],
)
def test_spf_record_judged(records: list[str], status: str, words: str) -> None:
    found = spf_check(DOMAIN, TxtAnswer(name=DOMAIN, records=tuple(records)))

    assert found.status == status
    assert words in found.detail


def test_spf_of_a_domain_that_does_not_exist_fails() -> None:
    found = spf_check(DOMAIN, TxtAnswer(name=DOMAIN, nxdomain=True))

    assert (found.status, found.detail) == (
        "FAIL",
        f"{DOMAIN} does not exist in DNS: receivers refuse mail from it",
    )


def test_dmarc_is_looked_for_up_the_tree_to_below_the_top_level() -> None:
    assert dmarc_names("mail.news.example.net") == [
        "_dmarc.mail.news.example.net",
        "_dmarc.news.example.net",
        "_dmarc.example.net",
    ]
    assert dmarc_names("example.net") == ["_dmarc.example.net"]
    # A deep name jumps to its last seven labels, then walks on up to below the TLD.
    deep = "a.b.c.d.e.f.g.h.i.mail.example.org"
    assert dmarc_names(deep) == [
        f"_dmarc.{deep}",
        "_dmarc.f.g.h.i.mail.example.org",
        "_dmarc.g.h.i.mail.example.org",
        "_dmarc.h.i.mail.example.org",
        "_dmarc.i.mail.example.org",
        "_dmarc.mail.example.org",
        "_dmarc.example.org",
    ]


@pytest.mark.parametrize(
    ("record", "status", "words"),
    [
        ("v=DMARC1; p=none", "ok", "policy none at _dmarc.news"),
        ("v=DMARC1; p=reject; sp=quarantine", "ok", "policy reject"),
        ("v=DMARC1; rua=mailto:x@example.net", "warn", "no valid policy"),
    ],
)
def test_dmarc_record_at_the_domain_judged(record: str, status: str, words: str) -> None:
    answers = [
        TxtAnswer(name=f"_dmarc.{DOMAIN}", records=(record,)),
        TxtAnswer(name=f"_dmarc.{ORG}", records=("v=DMARC1; p=reject",)),
    ]

    found = dmarc_check(DOMAIN, answers)

    assert found.status == status
    assert words in found.detail


def test_a_subdomain_inherits_the_organisations_subdomain_policy() -> None:
    answers = [
        TxtAnswer(name=f"_dmarc.{DOMAIN}", nxdomain=True),
        TxtAnswer(name=f"_dmarc.{ORG}", records=("v=DMARC1; p=reject; sp=none",)),
    ]

    found = dmarc_check(DOMAIN, answers)

    assert (found.status, found.detail) == (
        "ok",
        f"policy none at _dmarc.{ORG}, covering {DOMAIN}: receivers only report, the usual "
        "first step",
    )


@pytest.mark.timeout(60)
def test_a_domain_with_spf_dmarc_and_the_matching_dkim_key_passes(project: Path) -> None:
    key, record = dkim_key(project)
    zone = {
        DOMAIN: [SPF, "other=thing"],
        f"_dmarc.{ORG}": [DMARC],
        f"news._domainkey.{DOMAIN}": [record],
    }
    with DnsServer(zone) as dns:
        env = READY | {
            "DIGEST_CHECK__NAMESERVERS": dns.nameservers,
            "DIGEST_DKIM__PRIVATE_KEY_FILE": str(key),
            "DIGEST_DKIM__SELECTOR": "news",
        }
        result = run(env)

    found = lines(result)
    assert found["dns.spf"] == f"ok    dns.spf: {SPF}"
    assert found["dns.dmarc"] == (
        f"ok    dns.dmarc: policy quarantine at _dmarc.{ORG}, covering {DOMAIN}: mail that "
        "fails SPF and DKIM alignment is put in spam"
    )
    assert found["dns.dkim"] == (
        f"ok    dns.dkim: key at news._domainkey.{DOMAIN} matches the private key"
    )
    assert f"news._domainkey.{DOMAIN}" in dns.queries
    assert result.exit_code == 0, result.output


@pytest.mark.timeout(60)
def test_a_published_key_that_is_not_ours_fails(project: Path) -> None:
    key, _ = dkim_key(project)
    _, other = dkim_key(project, "other.pem")
    zone = {DOMAIN: [SPF], f"_dmarc.{DOMAIN}": [DMARC], f"news._domainkey.{DOMAIN}": [other]}
    with DnsServer(zone) as dns:
        env = READY | {
            "DIGEST_CHECK__NAMESERVERS": dns.nameservers,
            "DIGEST_DKIM__PRIVATE_KEY_FILE": str(key),
            "DIGEST_DKIM__SELECTOR": "news",
        }
        result = run(env)

    assert result.exit_code == 1
    assert lines(result)["dns.dkim"] == (
        f"FAIL  dns.dkim: the key at news._domainkey.{DOMAIN} is not the public half of "
        "dkim.private_key_file: every signature will fail; publish the key that matches"
    )


@pytest.mark.timeout(60)
def test_a_domain_without_records_fails_spf_and_warns_of_dmarc_and_dkim(project: Path) -> None:
    key, _ = dkim_key(project)
    with DnsServer({DOMAIN: ["google-site-verification=abc"]}) as dns:
        env = READY | {
            "DIGEST_CHECK__NAMESERVERS": dns.nameservers,
            "DIGEST_DKIM__PRIVATE_KEY_FILE": str(key),
            "DIGEST_DKIM__SELECTOR": "news",
        }
        result = run(env)
        unsigned = run(READY | {"DIGEST_CHECK__NAMESERVERS": dns.nameservers})

    assert result.exit_code == 1
    found = lines(result)
    assert found["dns.spf"].startswith(f"FAIL  dns.spf: no SPF record at {DOMAIN}")
    assert found["dns.dmarc"].startswith(f"warn  dns.dmarc: no DMARC record at _dmarc.{DOMAIN}")
    assert found["dns.dkim"].startswith(f"FAIL  dns.dkim: no DKIM key at news._domainkey.{DOMAIN}")
    assert lines(unsigned)["dns.dkim"].startswith(
        "warn  dns.dkim: digest does not sign (dkim.selector unset)"
    )


@pytest.mark.timeout(60)
def test_no_answer_from_the_dns_is_a_warning_within_the_time_out(project: Path) -> None:
    with Silent() as dns:
        env = READY | {
            "DIGEST_CHECK__NAMESERVERS": dns.nameservers,
            "DIGEST_CHECK__DNS_TIMEOUT": "0.5",
        }
        started = time.monotonic()
        result = run(env)
        took = time.monotonic() - started

    found = lines(result)
    for name in ("dns.spf", "dns.dmarc"):
        assert found[name].startswith("warn"), found[name]
        assert "no answer within 0.5 s (no network" in found[name]
    assert took < 10
    assert result.exit_code == 0, result.output


def test_a_bad_nameserver_setting_is_one_line(project: Path) -> None:
    result = run(READY | {"DIGEST_CHECK__NAMESERVERS": "dns.example.net"})

    assert result.exit_code == 1
    assert "check.nameservers" in result.output or "CHECK__NAMESERVERS" in result.output
    assert "'dns.example.net': expected an IP address" in result.output
    assert "Traceback" not in result.output


def test_a_spamassassin_report_names_the_rules_that_scored() -> None:
    report = (
        "Content analysis details:   (2.6 points, 5.0 required)\n\n"
        " pts rule name              description\n"
        "---- ---------------------- ------------------\n"
        " 1.9 HTML_IMAGE_ONLY_16     HTML: images with 1200-1600 bytes of words\n"
        "-0.0 NO_RELAYS              Informational: message was not relayed via SMTP\n"
        " 0.7 HTML_FONT_LOW_CONTRAST BODY: HTML font color similar or identical to background\n"
    )

    found = spam_check(report)

    assert (found.status, found.detail) == (
        "warn",
        "SpamAssassin score 2.6 (HTML_IMAGE_ONLY_16 +1.9, HTML_FONT_LOW_CONTRAST +0.7): "
        "over 2.0; see the rules named",
    )
    assert spam_check("6.5/5.0\n").status == "FAIL"


@needs_spamassassin
@pytest.mark.timeout(120)
def test_spamassassin_scores_the_message(project: Path) -> None:
    with DnsServer({DOMAIN: [SPF]}) as dns:
        result = run(READY | {"DIGEST_CHECK__NAMESERVERS": dns.nameservers})

    assert SPAMASSASSIN, "SpamAssassin is not installed: make test installs it"
    spam = lines(result)["message.spam"]
    assert spam.startswith(
        ("ok    message.spam: SpamAssassin score", "warn  message.spam: SpamAssassin score")
    )


@needs_spamassassin
@pytest.mark.timeout(120)
def test_spamassassin_fails_a_message_it_takes_for_spam() -> None:
    assert SPAMASSASSIN, "SpamAssassin is not installed: make test installs it"
    message = (
        "From: someone@digest-check-tests.net\r\nTo: reader@digest-check-tests.net\r\n"
        f"Subject: test\r\n\r\n{GTUBE}\r\n"
    ).encode()

    found = asyncio.run(check_spam(message, timeout=60))

    assert found.status == "FAIL"
    assert "GTUBE" in found.detail


@pytest.mark.timeout(60)
def test_a_revoked_or_unaligned_dkim_key_and_a_broken_dns_are_named(project: Path) -> None:
    key, record = dkim_key(project)
    zone = {
        DOMAIN: [SPF],
        f"_dmarc.{DOMAIN}": [DMARC, "v=DMARC1; p=reject"],
        f"news._domainkey.{DOMAIN}": ["v=DKIM1; k=rsa; p="],
        "news._domainkey.other-signer.net": [record],
    }
    with DnsServer(zone, servfail=[ORG, f"_dmarc.{ORG}"]) as dns:
        base = READY | {
            "DIGEST_CHECK__NAMESERVERS": dns.nameservers,
            "DIGEST_DKIM__PRIVATE_KEY_FILE": str(key),
            "DIGEST_DKIM__SELECTOR": "news",
        }
        revoked = lines(run(base))
        unaligned = lines(run(base | {"DIGEST_DKIM__DOMAIN": "other-signer.net"}))
        broken = lines(run(base | {"DIGEST_FROM_ADDRESS": f"digest@{ORG}"}))
        half_set = lines(
            run(
                READY
                | {"DIGEST_CHECK__NAMESERVERS": dns.nameservers, "DIGEST_DKIM__SELECTOR": "news"}
            )
        )

    assert revoked["dns.dkim"].startswith(
        f"FAIL  dns.dkim: the key at news._domainkey.{DOMAIN} is revoked (empty p=)"
    )
    assert revoked["dns.dmarc"].startswith(f"warn  dns.dmarc: 2 DMARC records at _dmarc.{DOMAIN}")
    assert unaligned["dns.dkim"].startswith(
        "warn  dns.dkim: the key at news._domainkey.other-signer.net matches, but signs for "
        f"other-signer.net, not the From domain {DOMAIN}"
    )
    assert broken["dns.spf"] == (
        f"warn  dns.spf: could not look up {ORG}: no DNS server gave an answer (SERVFAIL or "
        "refused)"
    )
    assert half_set["dns.dkim"].startswith("FAIL  dns.dkim: dkim: set both")


def test_without_spamassassin_the_score_is_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    found = asyncio.run(check_spam(b"Subject: x\r\n\r\nx\r\n", timeout=5))

    assert (found.status, found.detail) == (
        "skip",
        "SpamAssassin is not installed (apt-get install spamassassin) to score it",
    )
    assert spam_check("no report here").status == "warn"


@pytest.mark.timeout(60)
def test_spf_is_checked_where_the_envelope_sender_is(project: Path) -> None:
    zone = {"bounces.elsewhere.net": [SPF], DOMAIN: ["v=spf1 -all"]}
    with DnsServer(zone) as dns:
        found = lines(
            run(
                READY
                | {
                    "DIGEST_CHECK__NAMESERVERS": dns.nameservers,
                    "DIGEST_BOUNCE_ADDRESS": "bounces@bounces.elsewhere.net",
                }
            )
        )

    assert found["dns.spf"] == f"ok    dns.spf: {SPF}"
    assert found["dns.spf.alignment"].startswith(
        "warn  dns.spf.alignment: the envelope sender's domain bounces.elsewhere.net"
    )


def test_relaxed_alignment_takes_a_parent_or_a_child_domain() -> None:
    assert aligned("news.example.org", "example.org")
    assert aligned("example.org", "news.example.org")
    assert not aligned("example.org", "example.net")
    assert not aligned("badexample.org", "example.org")
