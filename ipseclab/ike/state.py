"""The IKE SA's states and every allowed transition, as a table (in the manner of h11's ``_state.py``).

Rules, read top to bottom:

* The initiator sends IKE_SA_INIT, then IKE_AUTH; each response moves it on (RFC 7296 1.2).
  An INVALID_KE_PAYLOAD or COOKIE answer sends IKE_SA_INIT again (``RETRY_INIT``, 1.2 and 2.6).
* The responder answers IKE_SA_INIT, then IKE_AUTH.
* Once ESTABLISHED, either side may run INFORMATIONAL and CREATE_CHILD_SA exchanges; a Delete of the IKE SA
  ends it.
* An IKE rekey (RFC 7296 2.18) makes a new IKE SA that starts ESTABLISHED (``REKEY_CREATED``) and leaves the old
  one REKEYED: it takes nothing but INFORMATIONAL (its Delete) until the initiator of the rekey deletes it.
* Any state may fail; FAILED and CLOSED are final.
* ``REQUESTS`` says which requests from the peer each state takes at all; the engine drops any other before
  it decrypts it, so an exchange handler only ever runs where its step is allowed.

``transition`` raises LocalProtocolError for anything else, so a bug in the engine shows up as a
named, impossible step instead of a half-updated SA.
"""

from __future__ import annotations

from enum import StrEnum

from ..errors import LocalProtocolError
from ..packets.enums import ExchangeType


class Role(StrEnum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class IkeState(StrEnum):
    INITIAL = "initial"
    INIT_SENT = "init-sent"  # initiator: IKE_SA_INIT request out
    AUTH_SENT = "auth-sent"  # initiator: IKE_AUTH request out
    INIT_DONE = "init-done"  # responder: IKE_SA_INIT answered, waiting for IKE_AUTH
    ESTABLISHED = "established"
    REKEYED = "rekeyed"  # replaced by a new IKE SA; waits for its Delete
    DELETING = "deleting"  # we sent the Delete of the IKE SA
    CLOSED = "closed"
    FAILED = "failed"


class Trigger(StrEnum):
    SEND_INIT = "send IKE_SA_INIT request"
    RETRY_INIT = "send IKE_SA_INIT request again"
    RECV_INIT_RESPONSE = "receive IKE_SA_INIT response"
    RECV_AUTH_RESPONSE = "receive IKE_AUTH response"
    RECV_INIT_REQUEST = "receive IKE_SA_INIT request"
    RECV_AUTH_REQUEST = "receive IKE_AUTH request"
    SEND_DELETE = "send Delete of the IKE SA"
    RECV_DELETE = "receive Delete of the IKE SA"
    DELETE_ANSWERED = "receive the answer to our Delete"
    REKEY_CREATED = "come into being by an IKE rekey"
    REKEYED = "be replaced by a new IKE SA"
    FAIL = "fail"


INI, RES = Role.INITIATOR, Role.RESPONDER
S = IkeState
T = Trigger

TRANSITIONS: dict[tuple[Role, IkeState, Trigger], IkeState] = {
    (INI, S.INITIAL, T.SEND_INIT): S.INIT_SENT,
    (INI, S.INIT_SENT, T.RETRY_INIT): S.INIT_SENT,
    (INI, S.INIT_SENT, T.RECV_INIT_RESPONSE): S.AUTH_SENT,
    (INI, S.AUTH_SENT, T.RECV_AUTH_RESPONSE): S.ESTABLISHED,
    (RES, S.INITIAL, T.RECV_INIT_REQUEST): S.INIT_DONE,
    (RES, S.INIT_DONE, T.RECV_AUTH_REQUEST): S.ESTABLISHED,
}
for _role in Role:
    TRANSITIONS[(_role, S.INITIAL, T.REKEY_CREATED)] = S.ESTABLISHED
    TRANSITIONS[(_role, S.ESTABLISHED, T.REKEYED)] = S.REKEYED
    TRANSITIONS[(_role, S.REKEYED, T.SEND_DELETE)] = S.DELETING
    TRANSITIONS[(_role, S.REKEYED, T.RECV_DELETE)] = S.CLOSED
    TRANSITIONS[(_role, S.ESTABLISHED, T.SEND_DELETE)] = S.DELETING
    TRANSITIONS[(_role, S.ESTABLISHED, T.RECV_DELETE)] = S.CLOSED
    TRANSITIONS[(_role, S.DELETING, T.RECV_DELETE)] = S.CLOSED  # both sides deleted at once
    TRANSITIONS[(_role, S.DELETING, T.DELETE_ANSWERED)] = S.CLOSED
    for _state in IkeState:
        if _state not in (S.CLOSED, S.FAILED):
            TRANSITIONS[(_role, _state, T.FAIL)] = S.FAILED

FINAL = frozenset((S.CLOSED, S.FAILED))

# the peer's requests each state takes (RFC 7296 1.2-1.4); IKE_SA_INIT has its own, unauthenticated path
REQUESTS: dict[tuple[Role, IkeState], frozenset[int]] = {
    (RES, S.INIT_DONE): frozenset({ExchangeType.IKE_AUTH}),
}
for _role in Role:
    REQUESTS[(_role, S.ESTABLISHED)] = frozenset({ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA})
    REQUESTS[(_role, S.REKEYED)] = frozenset({ExchangeType.INFORMATIONAL})
    REQUESTS[(_role, S.DELETING)] = frozenset({ExchangeType.INFORMATIONAL})


def transition(role: Role, state: IkeState, trigger: Trigger) -> IkeState:
    """The state after ``trigger``; LocalProtocolError names the step when the table does not allow it."""
    try:
        return TRANSITIONS[(role, state, trigger)]
    except KeyError:
        raise LocalProtocolError(f"{role} in state {state} cannot {trigger}") from None
