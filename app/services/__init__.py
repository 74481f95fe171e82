"""The service layer (filled in the next commit)."""
