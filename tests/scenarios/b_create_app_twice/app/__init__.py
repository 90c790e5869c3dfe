"""A shop API built by an application factory, ``create_app()``."""
