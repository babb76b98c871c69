"""The From domain's DNS as receivers read it: SPF, DMARC and the DKIM key.

The look-ups (dnspython, each with a short time-out) are at the edge; what they found is
judged by pure functions. No answer at all (no network, a DNS server down) is a ``warn``:
it says nothing about the domain.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import dkim
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from digest.checks.outcome import Check
from digest.checks.settings import reserved_domain
from digest.email.dkim import DkimKey
from digest.errors import ConfigError
from digest.options import dkim_key
from digest.settings import CheckSettings, Settings

__all__ = [
    "TxtAnswer",
    "aligned",
    "check_domain",
    "dkim_check",
    "dmarc_check",
    "dmarc_names",
    "lookup_txt",
    "resolver_for",
    "spf_check",
]

# An SPF modifier ("redirect=…", "exp=…") as against a mechanism ("include:…", "a", "-all").
_MODIFIER = re.compile(r"^[a-z][a-z0-9_.-]*=", re.IGNORECASE)
# From a name of this many labels or more, DMARCbis's tree walk jumps to the last seven
# before going up one label at a time: a few look-ups, however deep the domain.
_DMARC_JUMP = 8
# What the DKIM check signs, to verify against the published key.
_PROBE = b"From: dkim-check@%s\r\nSubject: DKIM key check\r\n\r\nDKIM key check\r\n"


@dataclass(frozen=True, kw_only=True, slots=True)
class TxtAnswer:
    """What one TXT look-up found: the records, or that the name does not exist, or why no
    answer came."""

    name: str
    records: tuple[str, ...] = ()
    nxdomain: bool = False
    # Set when no answer came (time-out, no network): the records say nothing then.
    failure: str | None = None


def resolver_for(check: CheckSettings) -> dns.asyncresolver.Resolver | str:
    """The resolver the settings name (``check.nameservers``, else the system's), or why
    there is none."""
    if check.nameserver_list:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(address, port) for address, port in check.nameserver_list
        ]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            return "no DNS server configured on this machine (set check.nameservers)"
    resolver.timeout = resolver.lifetime = check.dns_timeout
    return resolver


async def lookup_txt(resolver: dns.asyncresolver.Resolver, name: str) -> TxtAnswer:
    """The TXT records at ``name``, each record's strings joined as RFC 7208 asks."""
    try:
        answer = await resolver.resolve(name, "TXT", search=False)
    except dns.resolver.NXDOMAIN:
        return TxtAnswer(name=name, nxdomain=True)
    except dns.resolver.NoAnswer:
        return TxtAnswer(name=name)
    except dns.resolver.LifetimeTimeout:
        return TxtAnswer(
            name=name,
            failure=f"no answer within {resolver.lifetime:g} s (no network, or the DNS "
            "server does not answer)",
        )
    except dns.resolver.NoNameservers:
        return TxtAnswer(name=name, failure="no DNS server gave an answer (SERVFAIL or refused)")
    except dns.exception.DNSException as exc:
        return TxtAnswer(name=name, failure=str(exc) or type(exc).__name__)
    records = tuple(b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer)
    return TxtAnswer(name=name, records=records)


def spf_check(domain: str, answer: TxtAnswer) -> Check:
    """The domain's SPF record: one, naming some sender, not letting the world send."""
    name = "dns.spf"
    if answer.failure:
        return Check(
            name=name, status="warn", detail=f"could not look up {domain}: {answer.failure}"
        )
    if answer.nxdomain:
        return Check(
            name=name,
            status="FAIL",
            detail=f"{domain} does not exist in DNS: receivers refuse mail from it",
        )
    records = [r for r in answer.records if re.match(r"v=spf1(\s|$)", r, re.IGNORECASE)]
    if not records:
        return Check(
            name=name,
            status="FAIL",
            detail=f'no SPF record at {domain}: publish a TXT record "v=spf1 … ~all" that '
            "includes your relay (its documentation gives the include: or ip4: to use)",
        )
    if len(records) > 1:
        return Check(
            name=name,
            status="FAIL",
            detail=f"{len(records)} SPF records at {domain}: receivers treat more than one as "
            "an error (RFC 7208, 4.5); merge them into one",
        )
    record = records[0]
    terms = record.split()[1:]
    mechanisms = [term for term in terms if not _MODIFIER.match(term)]
    redirects = any(term.lower().startswith("redirect=") for term in terms)
    senders = [term for term in mechanisms if term.lstrip("+-~?").lower() != "all"]
    if any(term.lower() in ("all", "+all") for term in mechanisms):
        return Check(
            name=name,
            status="warn",
            detail=f"{record!r} lets every server in the world send as {domain}; end it "
            "with ~all or -all",
        )
    if not senders and not redirects:
        return Check(
            name=name,
            status="FAIL",
            detail=f"{record!r} allows no server to send for {domain}: add your relay "
            "(include:…, ip4:…, as its documentation says)",
        )
    return Check(name=name, status="ok", detail=record)


def dmarc_names(domain: str) -> list[str]:
    """Where a receiver looks for the domain's DMARC policy, nearest first (DMARCbis's
    tree walk: the domain, then, from a name of _DMARC_JUMP labels or more, straight to
    its last seven, then one label less at a time, above the top-level domain)."""
    labels = domain.lower().rstrip(".").split(".")
    names = [labels]
    rest = labels[-(_DMARC_JUMP - 1) :] if len(labels) >= _DMARC_JUMP else labels[1:]
    while len(rest) >= 2:
        names.append(rest)
        rest = rest[1:]
    return [f"_dmarc.{'.'.join(name)}" for name in names]


def dmarc_check(domain: str, answers: Sequence[TxtAnswer]) -> Check:
    """The DMARC policy that covers ``domain``, from the answers along ``dmarc_names``."""
    name = "dns.dmarc"
    for answer in answers:
        if answer.failure:
            return Check(
                name=name,
                status="warn",
                detail=f"could not look up {answer.name}: {answer.failure}",
            )
        records = [
            r for r in answer.records if re.match(r"v\s*=\s*DMARC1\s*(;|$)", r, re.IGNORECASE)
        ]
        if not records:
            continue
        if len(records) > 1:
            return Check(
                name=name,
                status="warn",
                detail=f"{len(records)} DMARC records at {answer.name}: receivers ignore "
                "them all; keep one",
            )
        tags = _tags(records[0])
        inherited = answer.name != f"_dmarc.{domain.lower()}"
        policy = tags.get("sp", tags.get("p")) if inherited else tags.get("p")
        if policy not in ("none", "quarantine", "reject"):
            return Check(
                name=name,
                status="warn",
                detail=f"{records[0]!r} at {answer.name} has no valid policy (p=none, "
                "quarantine or reject): receivers ignore it",
            )
        where = f"at {answer.name}" + (f", covering {domain}" if inherited else "")
        advice = (
            ": receivers only report, the usual first step"
            if policy == "none"
            else ": mail that fails SPF and DKIM alignment is "
            + ("refused" if policy == "reject" else "put in spam")
        )
        return Check(name=name, status="ok", detail=f"policy {policy} {where}{advice}")
    return Check(
        name=name,
        status="warn",
        detail=f"no DMARC record at _dmarc.{domain}: Gmail, Yahoo and Outlook.com require one "
        'from bulk senders; start with "v=DMARC1; p=none; rua=mailto:…"',
    )


def dkim_check(key: DkimKey, from_domain: str, answer: TxtAnswer) -> Check:
    """The published key at ``selector._domainkey.domain``: present, and the public half of
    the configured private key (a copy signed with it verifies against it)."""
    name = "dns.dkim"
    if answer.failure:
        return Check(
            name=name, status="warn", detail=f"could not look up {answer.name}: {answer.failure}"
        )
    records = [r for r in answer.records if "p=" in r.replace(" ", "")]
    if not records:
        return Check(
            name=name,
            status="FAIL",
            detail=f"no DKIM key at {answer.name}: publish the public half of "
            'dkim.private_key_file there as TXT "v=DKIM1; k=rsa; p=…"',
        )
    signed = key.sign(_PROBE % key.domain.encode())
    record = records[0].encode()
    try:
        verified = dkim.verify(signed, dnsfunc=lambda _name, timeout=5: record)
    except dkim.DKIMException:
        verified = False
    if not verified:
        revoked = _tags(records[0]).get("p", "") == ""
        return Check(
            name=name,
            status="FAIL",
            detail=f"the key at {answer.name} "
            + (
                "is revoked (empty p=)"
                if revoked
                else "is not the public half of dkim.private_key_file"
            )
            + ": every signature will fail; publish the key that matches",
        )
    if not aligned(from_domain, key.domain):
        return Check(
            name=name,
            status="warn",
            detail=f"the key at {answer.name} matches, but signs for {key.domain}, not the "
            f"From domain {from_domain}: DMARC needs them aligned (set dkim.domain)",
        )
    return Check(name=name, status="ok", detail=f"key at {answer.name} matches the private key")


def aligned(first: str, second: str) -> bool:
    """Relaxed DMARC alignment, near enough: one domain is the other or under it.

    (Exact alignment compares organisational domains, which takes the public suffix list;
    this is what that gives for the usual "news.example.org" under "example.org".)
    """
    one, other = first.lower().rstrip("."), second.lower().rstrip(".")
    return one == other or one.endswith("." + other) or other.endswith("." + one)


async def check_domain(
    settings: Settings, resolver: dns.asyncresolver.Resolver | None = None
) -> list[Check]:
    """SPF, DMARC and (when digest signs) the DKIM key of the From domain, looked up at
    once."""
    domain = settings.sending_domain.rstrip(".")
    if reserved_domain(domain):
        return [
            Check(
                name="dns",
                status="skip",
                detail=f"{domain} is not a real domain (see settings.from_address)",
            )
        ]
    if resolver is None:
        found = resolver_for(settings.check)
        if isinstance(found, str):
            return [Check(name="dns", status="warn", detail=found)]
        resolver = found
    try:
        key = dkim_key(settings)
    except ConfigError as exc:
        key_check: Check | None = Check(name="dns.dkim", status="FAIL", detail=str(exc))
        key = None
    else:
        key_check = None
    # SPF is about the envelope sender (RFC 7208, 2.4): the bounce address's domain when
    # there is one, for DMARC aligned with From's.
    envelope = (settings.bounce_address or settings.from_address).rpartition("@")[2].rstrip(".")
    spf, dkim_answer, *dmarc = await asyncio.gather(
        lookup_txt(resolver, envelope),
        lookup_txt(resolver, f"{key.selector}._domainkey.{key.domain}") if key else _nothing(),
        *(lookup_txt(resolver, name) for name in dmarc_names(domain)),
    )
    checks = [spf_check(envelope, spf), dmarc_check(domain, dmarc)]
    if not aligned(envelope, domain):
        checks.append(
            Check(
                name="dns.spf.alignment",
                status="warn",
                detail=f"the envelope sender's domain {envelope} (bounce_address) is not "
                f"{domain} or under it: SPF cannot pass DMARC for the From domain; DKIM must",
            )
        )
    if key_check is not None:
        checks.append(key_check)
    elif key is not None:
        checks.append(dkim_check(key, domain, dkim_answer))
    else:
        checks.append(
            Check(
                name="dns.dkim",
                status="warn",
                detail="digest does not sign (dkim.selector unset): make sure the relay signs "
                f"for {domain}; Gmail and Yahoo require DKIM from bulk senders",
            )
        )
    return checks


async def _nothing() -> TxtAnswer:
    return TxtAnswer(name="")


def _tags(record: str) -> dict[str, str]:
    """The ``tag=value`` pairs of a DMARC or DKIM record."""
    tags = {}
    for part in record.split(";"):
        tag, equals, value = part.partition("=")
        if equals:
            tags[tag.strip().lower()] = value.strip()
    return tags
