"""The server's routes: `api` (predict, health) and `page` (the drawing page)."""
