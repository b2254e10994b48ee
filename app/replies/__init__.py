"""Saved replies: shared snippets with a shortcut, managed in the panel, inserted in the
composer by typing `/`, and sent from Telegram with `/r`."""
