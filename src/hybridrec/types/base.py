"""Time, the base model and time windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import (
    BaseModel,
    ConfigDict,
    NonNegativeInt,
    model_validator,
)

UTC = UTC
ClusterId = NonNegativeInt


def to_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def ts_to_datetime(ts: int | float) -> datetime:
    """Unix seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(int(ts), tz=UTC)


def datetime_to_ts(value: datetime) -> int:
    """Aware or naive (UTC) datetime to integer Unix seconds."""
    return int(to_utc(value).timestamp())


class Model(BaseModel):
    """Base for hybridrec's pydantic models: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")




class TimeWindow(Model):
    """A half-open interval of time ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _order(self) -> TimeWindow:
        object.__setattr__(self, "start", to_utc(self.start))
        object.__setattr__(self, "end", to_utc(self.end))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} must be after its start {self.start}")
        return self

    @classmethod
    def ending_at(cls, end: datetime, days: float) -> TimeWindow:
        end = to_utc(end)
        return cls(start=end - timedelta(days=days), end=end)

    @property
    def start_ts(self) -> int:
        return datetime_to_ts(self.start)

    @property
    def end_ts(self) -> int:
        return datetime_to_ts(self.end)

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400.0

    def contains(self, when: datetime) -> bool:
        return self.start <= to_utc(when) < self.end


__all__ = [
    "UTC",
    "ClusterId",
    "Model",
    "TimeWindow",
    "datetime_to_ts",
    "to_utc",
    "ts_to_datetime",
]
