"""Saved replies on both databases through a real server: the case-insensitive unique shortcut
holds on PostgreSQL too (a refused insert or rename inside a transaction changes nothing and
leaves the connection usable)."""

from __future__ import annotations

import html
import re

from tests.support.clients import ADMIN_COOKIE, admin_csrf, page_with, panel_action
from tests.support.server import Server


def shortcuts(page: str) -> list[str]:
    return re.findall(r'<code class="reply-row__shortcut">/([^<]+)</code>', page)


async def test_unique_shortcuts_on_each_database(server: Server, admin_token: str) -> None:
    csrf = await admin_csrf(server.url, admin_token)

    async def post(path: str, **form: str) -> tuple[int, str]:
        status, body = await panel_action(server.url, admin_token, csrf, path, form)
        return status, html.unescape(body)

    status, body = await post("/admin/replies", shortcut="Teslimat", text_tr="Yarın teslim.")
    assert status == 200, body
    status, body = await post("/admin/replies", shortcut="teslimat", text_en="Tomorrow.")
    assert status == 400 and "/teslimat kısayoluyla kayıtlı bir yanıt zaten var." in body
    status, body = await post("/admin/replies", shortcut="fatura", text_tr="Faturanız ekte.")
    assert status == 200, body
    page = await page_with(server.url + "/admin/replies", ADMIN_COOKIE, admin_token)
    reply_id = re.search(r'/admin/replies/(\d+)/edit"[^>]*aria-label="/fatura', page)
    assert reply_id, page
    status, body = await post(
        f"/admin/replies/{reply_id.group(1)}", shortcut="TESLIMAT", text_tr="x"
    )
    assert status == 400 and "/TESLIMAT kısayoluyla kayıtlı bir yanıt zaten var." in body

    # Nothing changed, and the next write works (the refused one left no broken transaction).
    page = await page_with(server.url + "/admin/replies", ADMIN_COOKIE, admin_token)
    assert sorted(shortcuts(page)) == ["Teslimat", "fatura"]
    assert "Faturanız ekte." in html.unescape(page) and "Tomorrow." not in page
    status, body = await post(f"/admin/replies/{reply_id.group(1)}/delete")
    assert status == 200 and shortcuts(body) == ["Teslimat"]
