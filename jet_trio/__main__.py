"""``python -m jet_trio`` and the ``jet-trio`` console script."""

__all__ = ["main"]


def main() -> None:
    """The command line; only young garbage is collected until its start-up ends
    (``_cli.startup``)."""
    from ._cli import startup

    startup.pause()
    from ._cli.main import main as run

    run()


if __name__ == "__main__":
    main()
