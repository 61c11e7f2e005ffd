"""The feature parameters: everything besides the data that the features depend on (settings and holidays)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.settings import Settings


def us_federal_holidays(first_year: int, last_year: int) -> tuple[dt.date, ...]:
    """US federal holidays (observed dates) of the years first_year..last_year."""
    from pandas.tseries.holiday import USFederalHolidayCalendar

    days = USFederalHolidayCalendar().holidays(start=f"{first_year}-01-01", end=f"{last_year}-12-31")
    return tuple(d.date() for d in days)


@dataclass(frozen=True)
class FeatureParams:
    """Everything besides the data that the features depend on (part of the fingerprint)."""

    weather_max_age_hours: float
    default_delay_rate: float
    default_mean_arr_delay: float
    holidays: tuple[dt.date, ...]

    @classmethod
    def from_settings(cls, settings: "Settings") -> "FeatureParams":
        features = settings.features
        return cls(
            weather_max_age_hours=features.weather_max_age_hours,
            default_delay_rate=features.default_delay_rate,
            default_mean_arr_delay=features.default_mean_arr_delay,
            # The source's years and the next one: the nearest holiday of late December is New Year's Day.
            holidays=us_federal_holidays(settings.data.first_flight_date.year, settings.data.last_flight_date.year + 1),
        )

    def to_json(self) -> dict[str, Any]:
        return {"weather_max_age_hours": self.weather_max_age_hours, "default_delay_rate": self.default_delay_rate,
                "default_mean_arr_delay": self.default_mean_arr_delay,
                "holidays": [d.isoformat() for d in self.holidays]}
