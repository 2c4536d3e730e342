"""``python -m jet_trio`` and the ``jet-trio`` console script."""

__all__ = ["main"]


def main() -> None:
    """The command line, started with the garbage collector paused (``_cli.startup``)."""
    from ._cli import startup

    startup.pause()
    from ._cli.main import main as run

    run()


if __name__ == "__main__":
    main()
