"""The console's pages and the fragments the live streams send: the documents, samples,
usage and dual-run summaries put into the Jinja2 templates (autoescaped)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from cutover.config import Settings
from cutover.console import views
from cutover.console.dualrun import top_paths
from cutover.console.samples import Sampler
from cutover.console.sessions import Session
from cutover.ops.usage import UsageService
from cutover.rollout.control import Control
from cutover.rollout.fleet import Fleet, FleetUnavailable

TOP_CLIENTS = 10
logger = logging.getLogger("cutover.console")


def _when(iso: str | None) -> str:
    """An ISO time from a document as ``2026-12-01 19:30:02 UTC``."""
    if not iso:
        return ""
    at = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


class Pages:
    def __init__(
        self,
        control: Control,
        settings: Callable[[], Settings],
        sampler: Sampler,
        templates: Path,
        usage: UsageService | None,
        fleet: Fleet | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.control = control
        self.settings = settings
        self.sampler = sampler
        self.usage = usage
        self.fleet = fleet
        self.clock = clock
        self.env = Environment(
            loader=FileSystemLoader(templates), autoescape=select_autoescape(default=True),
            trim_blocks=True, lstrip_blocks=True,
        )  # fmt: skip
        self.env.filters["when"] = _when
        self.env.filters["number"] = _number

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    # -- the overview ------------------------------------------------------------------

    async def _overview_context(self, session: Session) -> dict[str, Any]:
        documents = await self.control.current_statuses()
        samples = self.sampler.since(self.clock() - views.SPARK_SECONDS)
        fleet = None
        if self.fleet is not None:
            try:
                fleet = await self.fleet.status()
            except FleetUnavailable as exc:
                fleet = {**exc.document, "problem": str(exc)}
        return {
            "session": session,
            "rows": [views.row(document, samples) for document in documents],
            "fleet": fleet,
            "now": self.clock(),
        }

    async def overview(self, session: Session) -> str:
        return self.render("overview.html", **await self._overview_context(session))

    async def overview_fragments(self, session: Session) -> dict[str, str]:
        context = await self._overview_context(session)
        return {
            "rows": self.render("_rows.html", **context),
            "fleet": self.render("_fleet.html", **context),
        }

    # -- one migration -------------------------------------------------------------------

    async def _migration_context(self, name: str, session: Session) -> dict[str, Any]:
        document = await self.control.current_status(name)
        now = self.clock()
        samples = self.sampler.since(now - views.CHART_SECONDS)
        return {
            "session": session,
            "doc": document,
            "row": views.row(document, samples),
            "allowed": views.allowed(document),
            "charts": views.charts(document, samples, now),
            "history": list(reversed(document["history"])),
            "now": now,
        }

    async def migration(self, name: str, session: Session, error: str | None) -> str:
        context = await self._migration_context(name, session)
        settings = self.settings()
        paths = await asyncio.to_thread(top_paths, settings.shadow.log_path, name)
        clients = await self._top_clients(name, settings)
        return self.render("migration.html", **context, error=error, paths=paths, clients=clients)

    async def migration_fragments(self, name: str, session: Session) -> dict[str, str]:
        context = await self._migration_context(name, session)
        fragments = {
            "summary": self.render("_summary.html", **context),
            "history": self.render("_history.html", **context),
            "charts": self.render("_charts.html", **context),
        }
        if session.acts:  # a viewer's page has no actions, nor does its stream
            fragments["actions"] = self.render("_actions.html", **context)
        return fragments

    async def _top_clients(self, name: str, settings: Settings) -> list[dict[str, Any]] | None:
        """The clients that called the migration's from most in 7 days (None: not counted)."""
        config = settings.migration(name)
        if self.usage is None or config is None or not config.deprecation:
            return None
        try:
            document = await self.usage.report(name, "7d")
        except Exception as exc:  # the store's errors: the page shows the rest
            logger.warning("console: the usage of %s was not read: %s", name, exc)
            return None
        clients = sorted(document["clients"], key=lambda client: -client["calls"])
        return clients[:TOP_CLIENTS]
