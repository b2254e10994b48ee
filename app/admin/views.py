"""The operator's blueprint under /admin: sign-in, the panel, transcripts, sign-in security, the
audit trail, saved replies, the team."""

from __future__ import annotations

from quart import Blueprint

from app.admin import export, login, panel, security, team
from app.audit import views as audit
from app.replies import views as replies

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.register_blueprint(login.bp)
bp.register_blueprint(panel.bp)
bp.register_blueprint(export.bp)
bp.register_blueprint(security.bp)
bp.register_blueprint(audit.bp)
bp.register_blueprint(replies.bp)
bp.register_blueprint(team.bp)
