"""One path for user mistakes: raise UserError, the CLI prints one line and exits 2."""


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and what to do."""
