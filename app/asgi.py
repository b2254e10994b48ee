"""The ASGI entry point: `hypercorn app.asgi:app` serves the whole product."""

from app import asgi_app, create_app

app = asgi_app(create_app())
