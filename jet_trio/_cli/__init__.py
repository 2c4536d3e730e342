"""The jet-trio command-line tool."""
