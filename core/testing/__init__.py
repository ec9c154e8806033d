"""A test kit for bot authors: `Harness` runs a flow through the real pipeline on a throwaway
database; `portabot.testing.fakes` has fake Telegram and VK API servers (buttons, edits, photos
included) and an image server for integration tests."""

from portabot.testing.harness import Harness, Speaker

__all__ = ["Harness", "Speaker"]
