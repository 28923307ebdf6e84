"""Small layers shared by several methods (ground layer)."""
