"""Usage over time, from the hourly buckets the proxy writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Sum
from django.db.models.functions import TruncDay, TruncHour

from core.api import utc_timestamp
from inference.models import UsageBucket

FIGURES = ("requests", "errors", "prompt_tokens", "completion_tokens")
GROUPS = {"deployment": "deployment_name", "model": "model", "key": "key_name"}
GRANULARITIES = {"hour": TruncHour, "day": TruncDay}


def usage_series(*, start: datetime, end: datetime, group_by: str, granularity: str) -> dict[str, Any]:
    """Requests, errors and tokens in [start, end) per `group_by` (deployment, model or key: calls without a key
    under null), per hour or day."""
    rows = (UsageBucket.objects.filter(hour__gte=start, hour__lt=end)
            .annotate(at=GRANULARITIES[granularity]("hour"))
            .values(GROUPS[group_by], "at")
            .annotate(**{figure: Sum(figure) for figure in FIGURES})
            .order_by(GROUPS[group_by], "at"))
    series: dict[str, list[dict]] = {}
    totals = dict.fromkeys(FIGURES, 0)
    for row in rows:
        point = {"at": utc_timestamp(row["at"]), **{figure: row[figure] for figure in FIGURES}}
        series.setdefault(row[GROUPS[group_by]], []).append(point)
        for figure in FIGURES:
            totals[figure] += row[figure]
    return {"from": utc_timestamp(start), "to": utc_timestamp(end), "group_by": group_by, "granularity": granularity,
            "series": [{"key": key or None, "points": points} for key, points in series.items()], "totals": totals}
