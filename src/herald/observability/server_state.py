"""The names of what the API's lifespan shares with the server that runs it: the state
it yields, which uvicorn hands to every connection's protocol. Apart from the metrics
module, so that the protocol reads them without importing prometheus_client before
``herald serve`` has chosen whether its API processes share their counts."""

from __future__ import annotations

# The counter of the connections refused past the process's cap (cli/connection_cap.py).
CONNECTIONS_REFUSED = "herald.connections_refused"
