"""Echo bots on the peer frameworks, each run by its own virtualenv's Python as a script."""
