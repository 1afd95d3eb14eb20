"""Where ``herald serve`` and ``herald worker`` listen: the checks made before anything
binds, so that a port that cannot be had is refused in one line at start rather than
found out later (by uvicorn after the banner, or by a dispatcher process restarted for
ever), and the addresses as the operator is shown them."""

from __future__ import annotations

import errno
import ipaddress
import socket

from herald.cli.output import fail
from herald.config import Settings


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (``[::1]:8000``) as URLs write it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_url(host: str, port: int, path: str = "") -> str:
    return f"http://{host_port(host, port)}{path}"


def check_free(host: str, port: int, what: str, *, chosen_by: str) -> None:
    """Exit 1 in one line unless ``port`` can be bound on every address of ``host``, as
    the server binds them; ``what`` names the server in the message ("the API"), and
    ``chosen_by`` the settings that choose another port for a port already taken."""
    try:
        for family, address in _listen_addresses(host, port):
            _try_bind(family, address)
    except OSError as exc:
        fail(cannot_listen(what, host, port, exc, chosen_by=chosen_by))


def cannot_listen(what: str, host: str, port: int, exc: OSError, *, chosen_by: str) -> str:
    """Why ``what`` cannot listen on ``host``:``port``, and for a port already taken (met
    most by a newcomer whose machine runs something on 8000) which settings choose another."""
    hint = f"; choose another with {chosen_by}" if exc.errno == errno.EADDRINUSE else ""
    return f"cannot serve {what} on {host_port(host, port)}: {exc.strerror or exc}{hint}"


def shared_port_problem(api: tuple[str, int], metrics: tuple[str, int]) -> str | None:
    """Why the metrics cannot have the (host, port) they are given beside the API's, if
    they cannot: the same port on the same address, or on addresses that overlap (one of
    them is every address, such as 0.0.0.0)."""
    (api_host, api_port), (metrics_host, metrics_port) = api, metrics
    if api_port != metrics_port or not _overlap(api_host, metrics_host):
        return None
    if api_host == metrics_host:
        where = f"both would listen on {host_port(api_host, api_port)}"
    else:
        where = (
            f"the API on {host_port(api_host, api_port)} and the metrics on "
            f"{host_port(metrics_host, metrics_port)} overlap"
        )
    return (
        f"the metrics port (HERALD_METRICS_PORT) is the API's port: {where}; give the "
        "metrics a port of their own"
    )


def _listen_addresses(host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return [(family, address) for family, _type, _proto, _name, address in infos]


def _try_bind(family: int, address: tuple[object, ...]) -> None:
    # The options a server sets: SO_REUSEADDR, so that a port left in TIME_WAIT by a
    # stopped server counts as free, as it will for the server; IPv6 apart from IPv4, as
    # asyncio binds each address of a name.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            # An address of a family the machine has not enabled: asyncio skips it too.
            if exc.errno != errno.EADDRNOTAVAIL or family != socket.AF_INET6:
                raise


def _overlap(first: str, second: str) -> bool:
    ours, theirs = _addresses_of(first), _addresses_of(second)
    everywhere = any(address.is_unspecified for address in ours | theirs)
    return everywhere or bool(ours & theirs) or first.lower() == second.lower()


def _addresses_of(host: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return set()  # a name that does not resolve: binding it fails, and says so
    return {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}


def check_serve_ports(settings: Settings) -> None:
    """Exit 1 in one line if ``herald serve`` could not have its ports: the API's, and
    the metrics port of the process that delivers (its dispatcher process, or the API
    process itself with the dispatcher inline). A metrics port found taken only by the
    dispatcher process would fail it and have it restarted for ever, while the API went
    on taking events that nothing delivers."""
    check_free(settings.host, settings.port, "the API", chosen_by="--port or HERALD_PORT")
    if settings.metrics_port is None or not settings.dispatcher:
        return
    if not settings.dispatcher_process and settings.workers > 1:
        fail(
            f"HERALD_METRICS_PORT cannot serve {settings.workers} API processes that each "
            "deliver inline and count their own deliveries: deliver from the dispatcher "
            "process (--dispatcher-process, the default), or scrape each process's /metrics"
        )
    metrics = (settings.metrics_host, settings.metrics_port)
    problem = shared_port_problem((settings.host, settings.port), metrics)
    if problem:
        fail(problem)
    check_free(*metrics, "metrics", chosen_by="HERALD_METRICS_PORT")
