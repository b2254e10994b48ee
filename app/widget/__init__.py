"""The embeddable widget: the loader script a host site pastes, and the chat in its frame."""
