"""Use cases of safe-exec. They talk to the outside only through the ports in `ports.py`."""
