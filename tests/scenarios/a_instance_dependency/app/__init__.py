"""A shop API whose session dependency is a configured class instance."""
