"""SpamAssassin's score of the message, where SpamAssassin is installed.

``spamassassin`` runs the local rules only (``-L``: no network tests, which would depend
on this machine's IP and DNS, not on the message); ``spamc`` asks a running ``spamd``.
Neither installed is a ``skip``: the check cannot run here, and says how to make it.
"""

from __future__ import annotations

import asyncio
import re
import shutil

from digest.checks.outcome import Check, Status

__all__ = ["SPAM_FAIL", "SPAM_WARN", "check_spam", "spam_check", "spam_command"]

# Above SPAM_WARN some filters start to doubt the message; SpamAssassin's own default
# threshold, SPAM_FAIL, files it as spam.
SPAM_WARN = 2.0
SPAM_FAIL = 5.0
# "Content analysis details:   (1.3 points, 5.0 required)" in spamassassin's report (which
# follows the message itself, so the first such line is the report's), and the first line
# of `spamc -R`: "1.3/5.0".
_SCORE = re.compile(r"^Content analysis details:\s+\((-?\d+(?:\.\d+)?) points,", re.M)
_SPAMC_SCORE = re.compile(r"\A(-?\d+(?:\.\d+)?)/-?\d+(?:\.\d+)?\s*$", re.M)
# One rule in the report's table: " 1.0 MISSING_MID   Missing Message-Id: header".
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z][A-Z0-9_]+)\b", re.M)


def spam_command() -> list[str] | None:
    """How to score a message here: ``spamassassin`` (local rules), else ``spamc``."""
    if path := shutil.which("spamassassin"):
        # -p: an empty preferences file, so that nothing is written to the home directory.
        return [path, "-L", "-t", "-p", "/dev/null"]
    if path := shutil.which("spamc"):
        return [path, "-R"]
    return None


def spam_check(report: str) -> Check:
    """The check a SpamAssassin report gives: the score and the rules that scored."""
    name = "message.spam"
    found = _SCORE.search(report) or _SPAMC_SCORE.search(report)
    if found is None:
        return Check(name=name, status="warn", detail="SpamAssassin gave no score")
    score = float(found.group(1))
    rules = sorted(
        ((float(points), rule) for points, rule in _RULE.findall(report[found.end() :])),
        reverse=True,
    )
    scoring = ", ".join(f"{rule} {points:+.1f}" for points, rule in rules if points > 0)
    status: Status = "FAIL" if score > SPAM_FAIL else "warn" if score > SPAM_WARN else "ok"
    detail = f"SpamAssassin score {score:.1f}" + (f" ({scoring})" if scoring else "")
    if status != "ok":
        detail += f": over {SPAM_FAIL if status == 'FAIL' else SPAM_WARN:.1f}; see the rules named"
    return Check(name=name, status=status, detail=detail)


async def check_spam(data: bytes, *, timeout: float) -> Check:
    """The message scored by SpamAssassin, or ``skip`` when it is not installed."""
    command = spam_command()
    if command is None:
        return Check(
            name="message.spam",
            status="skip",
            detail="SpamAssassin is not installed (apt-get install spamassassin) to score it",
        )
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(data), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return Check(
            name="message.spam",
            status="warn",
            detail=f"{command[0]} gave no score within {timeout:g} s (check.spam_timeout)",
        )
    report = out.decode("utf-8", "replace")
    if not (_SCORE.search(report) or _SPAMC_SCORE.search(report)) and err:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:]
        return Check(
            name="message.spam",
            status="warn",
            detail=f"{command[0]} failed: {last[0] if last else 'no output'}",
        )
    return spam_check(report)
