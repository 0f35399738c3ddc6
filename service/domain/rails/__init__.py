"""Payment rails: one module per way of paying, behind one small interface (`base.Rail`)."""

from service.domain.rails.base import (
    ChargeLater,
    ChargeResult,
    ChargeStatus,
    Due,
    FundingSource,
    InstantRail,
    Output,
    Rail,
    Settled,
    Step,
    Terms,
)
from service.domain.rails.registry import DEFAULT_RAILS, Rails

__all__ = [
    "DEFAULT_RAILS",
    "ChargeLater",
    "ChargeResult",
    "ChargeStatus",
    "Due",
    "FundingSource",
    "InstantRail",
    "Output",
    "Rail",
    "Rails",
    "Settled",
    "Step",
    "Terms",
]
