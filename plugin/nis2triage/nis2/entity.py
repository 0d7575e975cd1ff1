"""The reporting entity: who files the NIS2 reports and under which regime."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

# Entity types with thresholds of their own in Implementing Regulation (EU) 2024/2690,
# Art. 1; every other sector falls under the general test of NIS2 Art. 23(3).
IrType = Literal[
    "dns",
    "tld",
    "cloud",
    "data_centre",
    "cdn",
    "msp",
    "mssp",
    "marketplace",
    "search_engine",
    "social_network",
    "trust_service",
]


# The sectors of NIS2 (Directive (EU) 2022/2555): Annex I, of high criticality, then
# Annex II, the other critical sectors. Every report names the entity's.
SECTORS: tuple[str, ...] = (
    "energy",
    "transport",
    "banking",
    "financial_market_infrastructures",
    "health",
    "drinking_water",
    "waste_water",
    "digital_infrastructure",
    "ict_service_management",
    "public_administration",
    "space",
    "postal_and_courier_services",
    "waste_management",
    "chemicals",
    "food",
    "manufacturing",
    "digital_providers",
    "research",
)


def normalise_sector(raw: str) -> str:
    """A NIS2 sector as its name above: 'Drinking water' and 'drinking-water' are
    drinking_water; anything else is a ValueError listing them."""
    name = re.sub(r"[\s\-]+", "_", raw.strip().lower())
    if name not in SECTORS:
        raise ValueError(
            f"{raw!r} is not a NIS2 sector (Annex I or II of Directive 2022/2555); "
            f"write one of: {', '.join(SECTORS)}"
        )
    return name


def normalise_enterprise_number(raw: str) -> str:
    """A Belgian enterprise (KBO/BCE) number as ten digits, or ValueError.

    Valid when 97 - (first eight digits mod 97) equals the last two; old
    nine-digit numbers get a leading 0. Test vectors: 0403019261 and
    0428759497 are valid, 0431150351 is not.
    """
    digits = re.sub(r"[\s.\-]", "", raw.upper().removeprefix("BE"))
    if not digits.isdigit() or len(digits) not in (9, 10):
        raise ValueError(
            f"{raw!r} is not an enterprise number: expected 10 digits like 0403.019.261"
        )
    digits = digits.zfill(10)
    if digits[0] not in "01":
        raise ValueError(f"{raw!r}: a Belgian enterprise number starts with 0 or 1")
    if 97 - int(digits[:8]) % 97 != int(digits[8:]):
        raise ValueError(f"{raw!r} fails the mod-97 check: look for a mistyped digit")
    return digits


def format_enterprise_number(digits: str) -> str:
    return f"{digits[:4]}.{digits[4:7]}.{digits[7:]}"


class Entity(BaseModel):
    """The organisation's identification, as every report to the CCB carries it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    legal_name: str
    enterprise_number: str
    sector: str
    entity_class: Literal["essential", "important"]
    ir_type: IrType | None = None
    contact_24x7: str | None = None
    annual_turnover_eur: float | None = None

    @field_validator("enterprise_number")
    @classmethod
    def _check_number(cls, value: str) -> str:
        return normalise_enterprise_number(value)

    @field_validator("sector")
    @classmethod
    def _check_sector(cls, value: str) -> str:
        return normalise_sector(value)

    @property
    def trust_service_provider(self) -> bool:
        # NIS2 Art. 23(4)(b): trust service providers notify within 24 hours, not 72.
        return self.ir_type == "trust_service"
