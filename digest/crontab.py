"""Five-field crontab expressions, read as cron reads them, to APScheduler 3.x triggers.

APScheduler 3.x's own ``CronTrigger.from_crontab`` numbers weekdays from Monday = 0,
so "0 7 * * 1" would send on Tuesdays; cron counts from Sunday = 0 (and 7). Weekdays
are therefore turned into names here. Cron runs a job when *either* a restricted
day-of-month or a restricted day-of-week matches, APScheduler only when both do; rather
than guess, an expression that restricts both is refused.

On the night clocks go back, APScheduler 3.x fires twice at a time of the repeated hour
(01:30 summer time, then 01:30 winter time); :class:`LocalCronTrigger` fires once.
A time that does not exist on the night clocks go forward fires an hour later, that day.
"""

from __future__ import annotations

import datetime as dt

from apscheduler.triggers.cron import CronTrigger

__all__ = ["LocalCronTrigger", "cron_trigger"]

# Cron's numbering: 0 and 7 are Sunday.
_CRON_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


class LocalCronTrigger(CronTrigger):  # type: ignore[misc]
    """APScheduler's cron trigger, firing once at each local time, clock changes or not.

    When clocks go back, the times of the repeated hour come round twice; a time it
    fired at in the first pass is skipped in the second.
    """

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        """The next fire time after ``previous_fire_time``, as APScheduler asks for it."""
        fire: dt.datetime | None = super().get_next_fire_time(previous_fire_time, now)
        while fire is not None and previous_fire_time is not None:
            first_pass = _first_pass(fire, self.timezone)
            if first_pass is None or first_pass > previous_fire_time.astimezone(dt.UTC):
                break
            fire = super().get_next_fire_time(fire, fire)
        return fire


def _first_pass(when: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
    """If ``when`` is the second pass of a repeated local time, the first one (in UTC)."""
    local = when.astimezone(dt.UTC).astimezone(zone)
    first = local.replace(fold=0)
    if local.fold == 0 or first.utcoffset() == local.utcoffset():
        return None
    return first.astimezone(dt.UTC)


def cron_trigger(expression: str, timezone: dt.tzinfo) -> LocalCronTrigger:
    """The trigger for a five-field crontab ``expression`` in ``timezone``.

    Raises ValueError, with what is wrong, for anything else.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("expected five crontab fields (minute hour day month weekday)")
    minute, hour, day, month, weekday = fields
    if day != "*" and weekday != "*":
        raise ValueError(
            "restrict the day of the month or the day of the week, not both "
            "(cron would take either; say which)"
        )
    values = {
        "minute": minute,
        "hour": hour,
        "day": day,
        "month": month,
        "day_of_week": _weekdays(weekday),
    }
    # Field by field first, so the error says which field is wrong.
    for name, value in values.items():
        try:
            CronTrigger(**{name: value})
        except ValueError as exc:
            shown = weekday if name == "day_of_week" else value
            raise ValueError(f"{name.replace('_', ' ')} {shown!r}: {exc}") from None
    return LocalCronTrigger(**values, timezone=timezone)


def _weekdays(field: str) -> str:
    """Cron's day-of-week field as APScheduler day names ("1-5" → "mon,tue,wed,thu,fri")."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        step = _number(step_text, "step") if step_text else 1
        if step < 1:
            raise ValueError(f"weekday step {step_text!r} must be at least 1")
        # Ranges run over cron's own numbers, 0 to 7 (both Sunday), then wrap: "5-7" is
        # Friday to Sunday, "7-7" Sunday alone.
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = _day(start), _day(end)
            if first > last:
                raise ValueError(f"weekday range {span!r} runs backwards")
        else:
            first = last = _day(span)
        days.update(day % 7 for day in range(first, last + 1, step))
    # APScheduler's names, in its Monday-first order.
    order = [1, 2, 3, 4, 5, 6, 0]
    return ",".join(_CRON_DAYS[day] for day in order if day in days)


def _day(text: str) -> int:
    """A weekday as cron numbers it, 0 to 7; a name gives 0 to 6."""
    text = text.strip()
    if text in _CRON_DAYS:
        return _CRON_DAYS.index(text)
    number = _number(text, "weekday")
    if not 0 <= number <= 7:
        raise ValueError(f"weekday {text!r} is out of range (0-7, Sunday is 0 or 7)")
    return number


def _number(text: str, what: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{what} {text!r} is not a number or a day name")
    return int(text)
