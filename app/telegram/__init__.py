"""The Telegram operator console: an aiogram bot bridged to the chat's single write path."""
