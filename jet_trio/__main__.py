"""``python -m jet_trio`` and the ``jet-trio`` console script."""

from ._cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
