"""dispatcher: scheduled SQL reports delivered as DingTalk work notifications."""

__version__ = "0.1.0"
