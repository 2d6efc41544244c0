"""The dispatcher's benchmark: every scenario side by side against the sandbox (`python -m bench`)."""
