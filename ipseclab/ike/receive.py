"""The receive path of ``IkeConnection``: every check before anything changes, then the exchange's handler.

The rule (RFC 7296 2.21 and 5): before the IKE SA is authenticated, and for anything that fails integrity
afterwards, a datagram is dropped and counted (``counters``, a ``DatagramDropped`` event), never acted on.
So ``receive`` checks, in this order: the header parses; the SPIs name one of our IKE SAs (the current one, or
an old one finishing its Delete after a rekey); the I flag names the peer of that SA (RFC 7296 3.1: our own
message reflected back decrypts with our own keys); message id, exchange and state are ones we expect, and
``HANDLERS`` has an entry for (exchange, request/response); once keys exist the message carries an SK or SKF
payload (only IKE_SA_INIT and its retransmissions travel in the clear) and its ICV verifies.  Only then is a
response matched by message id to one of our requests in flight, a retransmitted request answered from the
cache (2.1; a request outside our window, 2.3, is dropped), or a
fragment stored (RFC 7383, within the ``MemoryBudget``).  An IKE_SA_INIT message cannot be authenticated: its
exchange module checks all of it before it commits anything, and a response it cannot take leaves the
initiator waiting for a valid one until the retransmissions give up (2.21.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ..errors import DecodeError, IntegrityError, IpsecLabError, LocalProtocolError, ProtocolError
from ..packets.enums import ExchangeType, PayloadType, enum_name
from ..packets.message import (
    FLAG_INITIATOR,
    FLAG_RESPONSE,
    HEADER_LEN,
    EncryptedFragment,
    IkeSaCrypto,
    Message,
    decode,
    decode_header,
)
from .exchanges import create_child_sa, ike_auth, ike_sa_init, informational, rekey_ike
from .sa import IkeSa
from .state import FINAL, REQUESTS, IkeState

if TYPE_CHECKING:
    from .connection import IkeConnection

DropKind = Literal["malformed", "integrity", "unprotected", "unexpected", "unacceptable", "over_limit"]

# (connection, the IKE SA it came on, the message, now, our request's context for a response)
Handler = Callable[["IkeConnection", IkeSa, Message, float, Any], None]


def _create_child_request(conn: IkeConnection, sa: IkeSa, msg: Message, now: float, ctx: Any) -> None:
    if rekey_ike.is_ike_rekey(msg):
        rekey_ike.on_request(conn, sa, msg, now)
    else:
        create_child_sa.on_request(conn, sa, msg, now)


def _create_child_response(conn: IkeConnection, sa: IkeSa, msg: Message, now: float, ctx: Any) -> None:
    if isinstance(ctx, rekey_ike.Pending):
        rekey_ike.on_response(conn, sa, msg, now, ctx)
    else:
        create_child_sa.on_response(conn, sa, msg, now, ctx)


# what handles each (exchange, is-a-response); IKE_SA_INIT has its own, unauthenticated path
HANDLERS: dict[tuple[int, bool], Handler] = {
    (ExchangeType.IKE_AUTH, False): lambda conn, sa, msg, now, ctx: ike_auth.on_request(conn, msg, now),
    (ExchangeType.IKE_AUTH, True): lambda conn, sa, msg, now, ctx: ike_auth.on_response(conn, msg, now),
    (ExchangeType.INFORMATIONAL, False): lambda conn, sa, msg, now, ctx: informational.on_request(conn, sa, msg, now),
    (ExchangeType.INFORMATIONAL, True): informational.on_response,
    (ExchangeType.CREATE_CHILD_SA, False): _create_child_request,
    (ExchangeType.CREATE_CHILD_SA, True): _create_child_response,
}


class Drop(Exception):
    """A datagram to drop (and count): control flow inside receive, never raised out of it."""

    def __init__(self, kind: DropKind, reason: str, notify: int = 0) -> None:
        super().__init__(reason)
        self.kind: DropKind = kind
        self.notify = notify  # an unauthenticated error notify the dropped message carried (DatagramDropped)


def receive(conn: IkeConnection, data: bytes, now: float) -> None:
    """Take or drop one datagram; never raises (a drop is counted by ``conn.drop``)."""
    try:
        _receive(conn, data, now)
    except Drop as exc:
        conn.drop(str(exc), exc.kind, exc.notify)
    except IntegrityError as exc:
        conn.drop(f"ICV check failed: {exc}", "integrity")
    except DecodeError as exc:
        conn.drop(f"malformed IKE message: {exc}", "malformed")
    except IpsecLabError as exc:  # e.g. a value the codec took but a later check refused: still just dropped
        conn.drop(f"unusable IKE message: {type(exc).__name__}: {exc}", "malformed")


def _find_sa(conn: IkeConnection, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
    for sa in conn.ike_sas():
        if sa.spi_i == spi_i and sa.spi_r == spi_r:
            return sa
    return None


def _receive(conn: IkeConnection, data: bytes, now: float) -> None:
    spi_i, spi_r, nxt, version, exchange, flags, mid = decode_header(data)
    if conn.state == IkeState.FAILED:
        raise Drop("unexpected", "the IKE SA has failed")
    if version >> 4 != 2:
        raise Drop("unexpected", f"IKE major version {version >> 4}, not 2")
    response = bool(flags & FLAG_RESPONSE)
    found = _find_sa(conn, spi_i, spi_r) if exchange != ExchangeType.IKE_SA_INIT else None
    sa = found or conn.ike
    if bool(flags & FLAG_INITIATOR) == sa.initiator:
        raise Drop("unexpected", f"the I flag says the {sa.role} sent it: our own message reflected, "
                                 f"or not for this IKE SA")
    if exchange == ExchangeType.IKE_SA_INIT:
        _receive_init(conn, data, spi_i, spi_r, mid, response, now)
        return
    kind = f"{enum_name(ExchangeType, exchange)} {'response' if response else 'request'} #{mid}"
    crypto = sa.neg.crypto
    if crypto is None:
        raise Drop("unexpected", f"{kind} before IKE_SA_INIT gave this IKE SA keys")
    if found is None:
        raise Drop("unexpected", f"{kind} for SPIs {spi_i.hex()}/{spi_r.hex()}, not this IKE SA's "
                                 f"{conn.spi_i.hex()}/{conn.spi_r.hex()}")
    if (exchange, response) not in HANDLERS:
        raise Drop("unexpected", f"{kind}: an exchange this engine does not take")
    if not _reaches_sk(data, nxt):
        raise Drop("unprotected", f"{kind} without an SK payload, though the IKE SA has keys")
    if response:
        _receive_response(conn, sa, data, exchange, mid, crypto, kind, now)
    else:
        _receive_request(conn, sa, data, exchange, mid, crypto, kind, now)


def _receive_response(conn: IkeConnection, sa: IkeSa, data: bytes, exchange: int, mid: int,
                      crypto: IkeSaCrypto, kind: str, now: float) -> None:
    out = sa.in_flight.get(mid)
    if out is None or exchange != out.exchange:
        raise Drop("unexpected", f"{kind}: not a response we are waiting for")
    msg = _reassemble(conn, sa, decode(data, crypto))  # the ICV first: a forged answer leaves the request out
    if msg is None:
        return  # a fragment of an answer still incomplete; the retransmission timer keeps running
    del sa.in_flight[mid]  # answers may come in any order when the peer's window is over 1 (RFC 7296 2.3)
    conn.observe(msg)
    _dispatch(conn, sa, msg, now, out.context)
    conn.send_next(sa, now)


def _receive_request(conn: IkeConnection, sa: IkeSa, data: bytes, exchange: int, mid: int,
                     crypto: IkeSaCrypto, kind: str, now: float) -> None:
    last = sa.responses.get(mid)
    if last is not None and exchange == last.exchange:
        again = decode(data, crypto)  # only a message that passes the ICV is the peer's retransmission
        frag = again.payloads[-1]
        conn.counters.duplicate_requests += 1
        if not isinstance(frag, EncryptedFragment) or frag.number == 1:
            conn.resend_response(last)  # RFC 7383 2.6.1: a fragmented request: on fragment 1 only
        return
    if sa.state in FINAL:
        raise Drop("unexpected", f"{kind}: the IKE SA is {sa.state}")
    if not sa.takes_request(mid):
        # RFC 7296 2.3: we keep state for ``window`` requests; one beyond it (a peer exceeding our window) or
        # an old one whose response we no longer hold is dropped, never answered or acted on
        raise Drop("unexpected", f"{kind}: outside our window (message ids {sa.peer_mid} to "
                                 f"{sa.peer_mid + sa.window - 1}, not yet answered)")
    if exchange not in REQUESTS.get((sa.role, sa.state), ()):
        raise Drop("unexpected", f"{kind} is not taken in state {sa.state}")
    msg = _reassemble(conn, sa, decode(data, crypto))
    if msg is not None:
        conn.observe(msg)
        _dispatch(conn, sa, msg, now, None)
        conn.send_next(sa, now)  # the peer may have opened its window


def _reassemble(conn: IkeConnection, sa: IkeSa, msg: Message) -> Message | None:
    """``msg`` itself, or once its last authentic fragment is in, the whole message (None until then)."""
    frag = msg.payloads[-1] if msg.payloads else None
    reassembler, account = sa.reassembler, sa.account
    if not isinstance(frag, EncryptedFragment):
        if reassembler.pending:  # a whole message makes fragments of the same one moot
            reassembler.discard(msg)
            account.set_fragments(reassembler.stored_bytes)
        return msg
    size = len(frag.plaintext or b"")
    if not account.allows_fragment(size):
        reassembler.discard(msg)
        account.set_fragments(reassembler.stored_bytes)
        raise Drop("over_limit", f"fragment {frag.number}/{frag.total} of {msg.summary()}: over the "
                                 f"{conn.budget.fragment_bytes_per_sa}-byte per-SA (or the total) bound; "
                                 f"the partial message is discarded")
    try:
        return reassembler.add(msg)
    finally:
        account.set_fragments(reassembler.stored_bytes)


def _receive_init(conn: IkeConnection, data: bytes, spi_i: bytes, spi_r: bytes, mid: int, response: bool,
                  now: float) -> None:
    """IKE_SA_INIT travels in the clear: checked whole by its exchange module before anything changes."""
    sa = conn.ike
    if mid != 0:
        raise Drop("unexpected", f"IKE_SA_INIT with message id {mid}, not 0")
    if conn.initiator:
        out = sa.in_flight.get(0)
        if not response or sa.state != IkeState.INIT_SENT or out is None \
                or out.exchange != ExchangeType.IKE_SA_INIT or spi_i != sa.spi_i:
            raise Drop("unexpected", "an IKE_SA_INIT message we are not waiting for")
        msg = decode(data)
        conn.observe(msg)
        try:
            ike_sa_init.on_response(conn, msg, data, now)
        except IpsecLabError as exc:  # nothing was changed: the exchange module checks before it commits
            refused = 0
            if isinstance(exc, ProtocolError) and exc.from_peer:
                sa.neg.init_refusal = (str(exc), exc.notify)
                refused = exc.notify
            raise Drop("unacceptable", f"IKE_SA_INIT response not taken, still waiting: {exc}", refused) from None
        return
    if response:
        raise Drop("unexpected", "an IKE_SA_INIT response sent to the responder")
    last = sa.responses.get(0)
    if sa.state != IkeState.INITIAL:
        if last is not None and last.exchange == ExchangeType.IKE_SA_INIT and data == sa.neg.init_request:
            conn.counters.duplicate_requests += 1  # RFC 7296 2.1: the same bytes again get the same answer
            conn.resend_response(last)
            return
        raise Drop("unexpected", f"an IKE_SA_INIT request in state {sa.state} that is not a "
                                 f"retransmission of the one answered")
    if spi_r != bytes(8):
        raise Drop("unexpected", f"an IKE_SA_INIT request with responder SPI {spi_r.hex()}")
    msg = decode(data)
    conn.observe(msg)
    try:
        ike_sa_init.on_request(conn, msg, data, now)
    except IpsecLabError as exc:  # answered with a notify, or not at all; no state was kept
        raise Drop("unacceptable", f"IKE_SA_INIT request refused: {exc}") from None


def _dispatch(conn: IkeConnection, sa: IkeSa, msg: Message, now: float, ctx: Any) -> None:
    """Hand an authentic, expected message to its exchange; a protocol error from it fails the connection."""
    handler = HANDLERS[(msg.exchange, msg.response)]
    try:
        handler(conn, sa, msg, now, ctx)
    except LocalProtocolError as exc:
        raise Drop("unexpected", f"{msg.summary()} cannot be taken in state {sa.state}: {exc}") from None
    except ProtocolError as exc:
        conn.fail(str(exc), exc.notify, remote=exc.from_peer)
        return
    if sa.state == IkeState.ESTABLISHED:
        conn.peer_announced(sa, msg)  # SET_WINDOW_SIZE (RFC 7296 2.3), from a message taken and authentic


_SK_TYPES = (PayloadType.SK, PayloadType.SKF)


def _reaches_sk(data: bytes, nxt: int) -> bool:
    """Whether the payload chain gets to an SK or SKF payload, read from the generic headers alone.

    Cheap and before any payload is parsed: once keys exist, nothing without one is looked at further.
    """
    pos, end = HEADER_LEN, len(data)
    while nxt != PayloadType.NONE:
        if nxt in _SK_TYPES:
            return True
        if pos + 4 > end:
            return False
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 4:
            return False
        nxt = data[pos]
        pos += length
    return False
