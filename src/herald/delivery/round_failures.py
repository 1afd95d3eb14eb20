"""A dispatcher's failing rounds said in a few lines: while the database is down every
round fails alike, and a line each, with its traceback, flooded the log."""

from __future__ import annotations

import logging

from herald.observability.logging import database_said

# Its lines are the dispatcher's, under the same name, which operators filter on.
log = logging.getLogger("herald.delivery.dispatcher")


class RoundFailures:
    """Counts the rounds (a claim, or a round's sending and recording) failing in a row,
    and says each: the traceback once, then a line a failure."""

    def __init__(self) -> None:
        self.count = 0

    def failed(self, exc: Exception) -> None:
        self.count += 1
        # The driver's first line, not SQLAlchemy's statement and link: the first line of
        # an outage says why, as the lines after it do.
        said = database_said(exc)
        if self.count == 1:
            log.exception("dispatch round failed: %s; retrying", said, exc_info=exc)
        else:
            log.warning("dispatch round failed again (%d in a row): %s", self.count, said)

    def succeeded(self) -> None:
        if self.count:
            log.info("dispatch rounds succeed again after %d failure(s)", self.count)
        self.count = 0
