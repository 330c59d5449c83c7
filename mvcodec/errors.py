"""Exceptions that the command-line tools turn into one-line messages."""


class InputError(Exception):
    """Bad user input (a file, an option, a stream): the message says what is wrong and what to do."""

    exit_code = 2
