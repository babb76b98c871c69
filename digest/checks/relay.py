"""Each relay tried as a send would use it, sending nothing."""

from __future__ import annotations

from digest.checks.outcome import Check
from digest.delivery.mailer import RelayPool, connect, disconnect
from digest.errors import RelayUnavailable, RelayUnusable
from digest.settings import SmtpSettings

__all__ = ["check_relay"]


async def check_relay(smtp: SmtpSettings) -> list[Check]:
    """Each relay tried as a send would use it: connect, EHLO, TLS, AUTH, then QUIT."""
    checks: list[Check] = []
    if not smtp.relays:
        return checks  # the outbox: check_settings says so
    for transport in RelayPool(smtp).relays:
        relay = transport.relay
        try:
            client = await connect(transport.settings)
        except (RelayUnusable, RelayUnavailable) as failure:
            checks.append(Check(name=f"relay {relay}", status="FAIL", detail=str(failure)))
            continue
        await disconnect(client)
        steps = ["connected", "EHLO"]
        if smtp.security != "none":
            steps.append("TLS")
        if smtp.username:
            steps.append("AUTH")
        checks.append(Check(name=f"relay {relay}", status="ok", detail=", ".join(steps)))
    return checks
