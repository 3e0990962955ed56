"""Entry points: the dependency-injector container, the app factory and the CLI."""
