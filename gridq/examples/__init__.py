"""Examples shipped inside the package (the demo task)."""
