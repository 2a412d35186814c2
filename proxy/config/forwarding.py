"""The ``forwarded`` section: which forwarding headers Cutover sends upstream."""

from __future__ import annotations

from cutover.config.base import SectionConfig
from cutover.vocabulary import ForwardedHeader


class ForwardedConfig(SectionConfig):
    # x-forwarded: X-Forwarded-For/-Proto/-Host; rfc7239: Forwarded; both: all of them.
    header: ForwardedHeader = ForwardedHeader.X_FORWARDED
