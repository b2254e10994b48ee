"""Rendering partials outside a request (realtime pushes), in the audience's locale."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

from app.i18n import using_locale


class Renderer:
    """Renders a template from the app's Jinja environment without an app context."""

    def __init__(self, env: Environment) -> None:
        self._env = env

    async def render(self, name: str, locale: str, **context: Any) -> str:
        """Render one template in the given locale."""
        with using_locale(locale):
            return await self._env.get_template(name).render_async(**context)
