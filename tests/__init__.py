"""gridq's test suite. A package only so that `tests.support` imports by its full name
from tests and bench/ alike (the repository root is on sys.path through pytest's
`pythonpath` option, or as the working directory of `python -m bench.<script>`)."""
