#!/usr/bin/env bash
# Build bench/.venv-seed: Flask-SocketIO + eventlet for the seed-design baseline server.
# Idempotent: does nothing when the venv already has both packages.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-seed"
py="${PYTHON:-python3}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import flask_socketio, eventlet" 2>/dev/null; then
    exit 0
fi
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q flask-socketio eventlet
"$venv/bin/python" -c "import flask_socketio, eventlet; print('seed venv ready: eventlet', eventlet.__version__)"
