"""The operator's blueprint under /admin: sign-in, the panel and the transcript downloads."""

from __future__ import annotations

from quart import Blueprint

from app.admin import export, login, panel

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.register_blueprint(login.bp)
bp.register_blueprint(panel.bp)
bp.register_blueprint(export.bp)
