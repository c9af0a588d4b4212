"""The SA lifecycle in memory, both roles: additional Child SAs, Child SA and IKE SA rekeys, INVALID_KE_PAYLOAD
inside CREATE_CHILD_SA, lifetimes, dead peer detection, NAT keepalives and where datagrams go (issue 11).

Every test drives two engines through the public API only (``create_child``, ``rekey_child``, ``delete_child``,
``rekey_ike``, the timers).  The oracles are outside the exchange code: ESP SAs built from both sides' events
must talk to each other; KEYMAT and the rekeyed IKE SA's keys are recomputed from what went over the wire
(nonces and SPIs read back from the decrypted messages) with ``ipseclab.crypto``'s key schedule, which is
checked against the ACVP/OpenSSL IKEv2 KDF vectors (``tests/vectors/acvp_ikev2_kdf.json``, including the
rekeyed SKEYSEED) and strongSwan's own logs; and the messages must have the payloads RFC 7296 1.3 lists.
"""

from __future__ import annotations

import os

import pytest

from ipseclab.crypto import child_sa_keys
from ipseclab.crypto.keys import ike_sa_keys, rekey_skeyseed
from ipseclab.errors import LocalProtocolError
from ipseclab.ike import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    ChildState,
    DeadPeer,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    IkeSaRekeyFailed,
    IkeState,
)
from ipseclab.ike.child import ChildTrigger, child_transition
from ipseclab.ike.exchanges import rekey_ike
from ipseclab.ike.negotiate import child_algorithms
from ipseclab.ike.selectors import from_cidrs
from ipseclab.packets.enums import ExchangeType, NotifyType
from ipseclab.packets.message import FLAG_INITIATOR, Message, decode
from ipseclab.packets.payloads import KePayload, NoncePayload, SaPayload

from .ike_wire import Wire, configs, handshake
from .test_ike_engine import PING, esp_pair

SIDES = ("i", "r")


def other(side: str) -> str:
    return "r" if side == "i" else "i"


def conn(w: Wire, side: str):
    return w.i if side == "i" else w.r


_CRYPTO: dict[bytes, object] = {}


def remember_crypto(w: Wire) -> None:
    """Keep every IKE SA's crypto by SPIs, so messages of an IKE SA deleted since can still be read back."""
    for c in (w.i, w.r):
        for sa in c.ike_sas():
            if sa.neg.crypto is not None:
                _CRYPTO[sa.spi_i + sa.spi_r] = sa.neg.crypto


def pump(w: Wire) -> None:
    """Pump, remembering the crypto of every IKE SA that exists at any step."""
    for _ in range(40):
        remember_crypto(w)
        before = len(w.log)
        w.pump(rounds=1)
        remember_crypto(w)
        if len(w.log) == before:
            return


def decoded(w: Wire, start: int = 0) -> list[tuple[str, Message]]:
    return [(d, decode(data, _CRYPTO[data[:16]]))  # type: ignore[arg-type]
            for d, data in w.log[start:] if data[18] != ExchangeType.IKE_SA_INIT]


def works(a: ChildSaEstablished, b: ChildSaEstablished) -> None:
    """The two ends of a pair talk: what one side's outbound SA makes, the other's inbound SA takes."""
    a_out, a_in = esp_pair(a)
    b_out, b_in = esp_pair(b)
    assert b_in.unprotect(a_out.protect(PING)) == PING
    assert a_in.unprotect(b_out.protect(PING)) == PING


def setup(**kw: object) -> Wire:
    w = handshake(*configs(**kw))
    assert w.i.state == w.r.state == IkeState.ESTABLISHED, w.events
    remember_crypto(w)
    return w


def keymat_oracle(w: Wire, event: ChildSaEstablished, request: Message, response: Message,
                  g_ir: bytes | None = None) -> None:
    """KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr) (RFC 7296 2.17) from the exchange's nonces as they went on the wire."""
    ike = w.of("i", IkeSaEstablished)[-1]
    ni = next(p for p in request.all_payloads() if isinstance(p, NoncePayload)).data
    nr = next(p for p in response.all_payloads() if isinstance(p, NoncePayload)).data
    chosen = next(p for p in response.all_payloads() if isinstance(p, SaPayload)).proposals[0]
    e, i = child_algorithms(chosen).key_sizes
    prf = w.i.neg.suite.prf  # type: ignore[union-attr]
    km = child_sa_keys(prf, ike.keys.sk_d, ni, nr, e, i, g_ir)
    assert {km.encr_i, km.encr_r} == {event.encr_key_in, event.encr_key_out}
    assert {km.integ_i, km.integ_r} == {event.integ_key_in, event.integ_key_out}


# -- additional Child SAs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
def test_an_additional_child_sa_is_created_by_either_side(side):
    w = setup(local_ts=("10.1.0.0/16",), remote_ts=("10.2.0.0/16",), r_local_ts=("10.2.0.0/16",),
              r_remote_ts=("10.1.0.0/16",))
    start = len(w.log)
    a, b = conn(w, side), conn(w, other(side))
    local = ("10.1.5.0/24",) if side == "i" else ("10.2.5.0/24",)
    remote = ("10.2.5.0/24",) if side == "i" else ("10.1.5.0/24",)
    spi = a.create_child(w.now, local_ts=local, remote_ts=remote)
    assert a.children[spi].state == ChildState.CREATING
    pump(w)
    (req_dir, req), (_, resp) = decoded(w, start)
    assert req_dir == ("i>r" if side == "i" else "r>i")
    assert req.summary() == f"CREATE_CHILD_SA request #{2 if side == 'i' else 0} [SK{{SA No TSi TSr}}]"
    assert resp.summary().endswith("[SK{SA No TSi TSr}]")
    mine, theirs = w.of(side, ChildSaEstablished)[-1], w.of(other(side), ChildSaEstablished)[-1]
    assert mine.spi_in == spi and (mine.spi_in, mine.spi_out) == (theirs.spi_out, theirs.spi_in)
    assert mine.local_ts == tuple(from_cidrs(local)) and not mine.pfs and mine.rekeyed is None
    works(mine, theirs)
    keymat_oracle(w, mine, req, resp)
    assert len(a.child_sas()) == len(b.child_sas()) == 2 and a.children[spi].state == ChildState.INSTALLED


def test_a_child_sa_outside_the_responders_selectors_is_refused_and_the_ike_sa_stays_up():
    w = setup(r_local_ts=("10.2.0.0/16",), r_remote_ts=("10.1.0.0/16",), local_ts=("10.1.0.0/16",),
              remote_ts=("10.2.0.0/16",))
    spi = w.i.create_child(w.now, local_ts=("192.0.2.0/24",), remote_ts=("198.51.100.0/24",))
    pump(w)
    (failed,) = w.of("i", ChildSaFailed)
    assert failed.notify == NotifyType.TS_UNACCEPTABLE and failed.remote
    assert spi not in w.i.children and len(w.i.child_sas()) == len(w.r.child_sas()) == 1
    assert w.i.state == w.r.state == IkeState.ESTABLISHED


def test_a_child_sa_for_a_configured_extra_pair_is_narrowed_to_it_and_a_crossed_pair_is_refused():
    """``extra_ts``: a peer's CREATE_CHILD_SA may ask for another configured (local, remote) pair, as strongSwan's
    further children of one connection; selectors from two different pairs fit none and are refused."""
    w = setup(local_ts=("10.1.0.0/16",), remote_ts=("10.2.0.0/16",), r_local_ts=("10.2.0.0/16",),
              r_remote_ts=("10.1.0.0/16",), r_extra_ts=((("10.20.0.0/24",), ("10.10.0.0/24",)),))
    assert w.r.config.local_ts == ("10.2.0.0/16",)  # IKE_AUTH's Child SA used the main pair only
    spi = w.i.create_child(w.now, local_ts=("10.10.0.0/25",), remote_ts=("10.20.0.0/16",))
    pump(w)
    mine, theirs = w.of("i", ChildSaEstablished)[-1], w.of("r", ChildSaEstablished)[-1]
    assert mine.spi_in == spi
    assert mine.local_ts == tuple(from_cidrs(("10.10.0.0/25",)))
    assert mine.remote_ts == tuple(from_cidrs(("10.20.0.0/24",)))
    works(mine, theirs)
    w.i.create_child(w.now, local_ts=("10.10.0.0/24",), remote_ts=("10.2.0.0/16",))  # one from each pair
    pump(w)
    (failed,) = w.of("i", ChildSaFailed)
    assert failed.notify == NotifyType.TS_UNACCEPTABLE and len(w.r.child_sas()) == 2


# -- Child SA rekey --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pfs", [False, True])
@pytest.mark.parametrize("side", SIDES)
def test_a_child_sa_rekey_replaces_the_pair_and_the_initiator_deletes_the_old_one(side, pfs):
    esp = "aes256gcm16-curve25519" if pfs else "aes256gcm16"
    w = setup(esp_proposals=(esp,))
    a, b = conn(w, side), conn(w, other(side))
    first_a, first_b = w.of(side, ChildSaEstablished)[0], w.of(other(side), ChildSaEstablished)[0]
    start = len(w.log)
    new_spi = a.rekey_child(first_a.spi_in, w.now)
    assert a.children[first_a.spi_in].state == ChildState.REKEYING
    pump(w)
    msgs = decoded(w, start)
    (_, req), (_, resp) = [(d, m) for d, m in msgs if m.exchange == ExchangeType.CREATE_CHILD_SA]
    ke = " KE" if pfs else ""
    assert req.summary().endswith(f"[SK{{N(REKEY_SA) SA No{ke} TSi TSr}}]")
    assert resp.summary().endswith(f"[SK{{SA No{ke} TSi TSr}}]")
    rekey_notify = req.all_payloads()[0]
    assert rekey_notify.spi == first_a.spi_in.to_bytes(4, "big")  # the SPI the rekey's initiator receives on
    new_a, new_b = w.of(side, ChildSaEstablished)[-1], w.of(other(side), ChildSaEstablished)[-1]
    assert new_a.spi_in == new_spi and new_a.rekeyed == first_a.spi_in and new_b.rekeyed == first_b.spi_in
    assert new_a.pfs == new_b.pfs == pfs
    works(new_a, new_b)
    assert {new_a.encr_key_in, new_a.encr_key_out}.isdisjoint({first_a.encr_key_in, first_a.encr_key_out})
    if not pfs:
        keymat_oracle(w, new_a, req, resp)
    else:  # the KE went into KEYMAT: the same nonces without g^ir give other keys
        with pytest.raises(AssertionError):
            keymat_oracle(w, new_a, req, resp)
    # the old pair: deleted by the rekey's initiator, on both sides
    (info_req_dir, info_req), _ = [(d, m) for d, m in msgs if m.exchange == ExchangeType.INFORMATIONAL]
    assert info_req_dir == ("i>r" if side == "i" else "r>i") and info_req.summary().endswith("[SK{DELETE}]")
    assert w.of(side, ChildSaDeleted) == [ChildSaDeleted(first_a.spi_in, first_a.spi_out, by_peer=False)]
    assert w.of(other(side), ChildSaDeleted) == [ChildSaDeleted(first_b.spi_in, first_b.spi_out, by_peer=True)]
    assert [c.key for c in a.child_sas()] == [new_a.spi_in] and [c.key for c in b.child_sas()] == [new_b.spi_in]
    assert a.get_timer() is None and b.get_timer() is None


@pytest.mark.parametrize("side", SIDES)
def test_invalid_ke_payload_in_create_child_sa_is_retried_with_the_group_asked_for(side):
    w = setup(esp_proposals=("aes256gcm16-ecp256-curve25519",), r_esp_proposals=("aes256gcm16-curve25519",))
    if side == "r":  # the responder of IKE_AUTH offers ecp256 first and the initiator wants curve25519
        w = setup(esp_proposals=("aes256gcm16-curve25519",), r_esp_proposals=("aes256gcm16-ecp256-curve25519",))
    a = conn(w, side)
    first = w.of(side, ChildSaEstablished)[0]
    start = len(w.log)
    a.rekey_child(first.spi_in, w.now)
    pump(w)
    ccs = [m for _, m in decoded(w, start) if m.exchange == ExchangeType.CREATE_CHILD_SA]
    assert [m.summary().split("[")[1] for m in ccs] == [
        "SK{N(REKEY_SA) SA No KE TSi TSr}]", "SK{N(INVALID_KE_PAYLOAD)}]",
        "SK{N(REKEY_SA) SA No KE TSi TSr}]", "SK{SA No KE TSi TSr}]"]
    groups = [next(p for p in m.all_payloads() if isinstance(p, KePayload)).group for m in (ccs[0], ccs[2], ccs[3])]
    assert groups == [19, 31, 31]
    assert ccs[1].all_payloads()[0].data == (31).to_bytes(2, "big")
    assert ccs[2].message_id == ccs[0].message_id + 1  # a new exchange, not a retransmission
    assert w.of(side, ChildSaEstablished)[-1].pfs and not w.of(side, ChildSaFailed)
    assert not w.of(other(side), ChildSaFailed)  # asking for another group is a step, not a failure
    works(w.of(side, ChildSaEstablished)[-1], w.of(other(side), ChildSaEstablished)[-1])


def test_a_refused_rekey_leaves_the_old_pair_installed():
    """The responder takes no PFS proposal: NO_PROPOSAL_CHOSEN, the IKE SA and the old pair stay (2.21.3)."""
    w = setup(esp_proposals=("aes256gcm16-curve25519",), r_esp_proposals=("aes256gcm16",))
    first = w.of("i", ChildSaEstablished)[0]
    new = w.i.rekey_child(first.spi_in, w.now)
    pump(w)
    (failed,) = w.of("i", ChildSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN and failed.remote
    assert new not in w.i.children and w.i.children[first.spi_in].state == ChildState.INSTALLED
    assert w.i.state == w.r.state == IkeState.ESTABLISHED and len(w.r.child_sas()) == 1
    w.i.rekey_child(first.spi_in, w.now)  # and it can be tried again
    pump(w)
    assert len(w.of("i", ChildSaFailed)) == 2


def test_the_child_state_table_refuses_impossible_steps():
    assert child_transition(ChildState.INSTALLED, ChildTrigger.REKEY) == ChildState.REKEYING
    with pytest.raises(LocalProtocolError, match="Child SA in state deleted cannot start rekeying it"):
        child_transition(ChildState.DELETED, ChildTrigger.REKEY)
    w = setup()
    spi = w.of("i", ChildSaEstablished)[0].spi_in
    w.i.delete_child(spi, w.now)
    with pytest.raises(LocalProtocolError, match="no installed Child SA"):
        w.i.rekey_child(spi, w.now)  # checked before anything changes
    with pytest.raises(LocalProtocolError):
        w.i.delete_child(spi, w.now)
    assert [c.state for c in w.i.children.values()] == [ChildState.DELETING]


# -- IKE SA rekey ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
def test_an_ike_sa_rekey_makes_new_spis_and_keys_per_rfc_7296_2_18_and_keeps_the_child_sas(side, monkeypatch):
    made = []
    real = rekey_ike.get_ke_group

    class Recording:
        def __init__(self, group_id: int) -> None:
            self.group = real(group_id)

        def generate(self):
            ke = self.group.generate()
            made.append(ke)
            return ke

    monkeypatch.setattr(rekey_ike, "get_ke_group", Recording)
    w = setup()
    a, b = conn(w, side), conn(w, other(side))
    old = w.of(side, IkeSaEstablished)[0]
    children = [c.key for c in a.child_sas()]
    start = len(w.log)
    a.rekey_ike(w.now)
    pump(w)
    msgs = decoded(w, start)
    (_, req), (_, resp) = [(d, m) for d, m in msgs if m.exchange == ExchangeType.CREATE_CHILD_SA]
    assert req.summary().endswith("[SK{SA No KE}]") and resp.summary().endswith("[SK{SA No KE}]")
    new_a, new_b = w.of(side, IkeSaEstablished)[-1], w.of(other(side), IkeSaEstablished)[-1]
    (ra,), (rb,) = w.of(side, IkeSaRekeyed), w.of(other(side), IkeSaRekeyed)
    assert (ra.old_spi_i, ra.old_spi_r) == (old.spi_i, old.spi_r) and not ra.by_peer and rb.by_peer
    assert (ra.spi_i, ra.spi_r) == (new_a.spi_i, new_a.spi_r) == (new_b.spi_i, new_b.spi_r)
    spi_i = req.all_payloads()[0].proposals[0].spi  # type: ignore[attr-defined]
    spi_r = resp.all_payloads()[0].proposals[0].spi  # type: ignore[attr-defined]
    assert (new_a.spi_i, new_a.spi_r) == (spi_i, spi_r) and {spi_i, spi_r}.isdisjoint({old.spi_i, old.spi_r})
    assert new_a.initiator and not new_b.initiator  # 2.18: the rekey's initiator is the new SA's initiator
    # the keys, recomputed from the wire: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), then prf+ (2.14)
    ni = next(p for p in req.all_payloads() if isinstance(p, NoncePayload)).data
    nr = next(p for p in resp.all_payloads() if isinstance(p, NoncePayload)).data
    ker = next(p for p in resp.all_payloads() if isinstance(p, KePayload))
    (ke_i,) = made
    g_ir = ke_i.shared_secret(ker.data)
    suite = a.neg.suite
    seed = rekey_skeyseed(suite.prf, old.keys.sk_d, ni, nr, g_ir)  # type: ignore[union-attr]
    assert ike_sa_keys(suite, seed, ni, nr, spi_i, spi_r) == new_a.keys == new_b.keys  # type: ignore[arg-type]
    # the old IKE SA is deleted by the rekey's initiator, on the old SPIs; the connection goes on
    (info_dir, info), _ = [(d, m) for d, m in msgs if m.exchange == ExchangeType.INFORMATIONAL]
    assert info_dir == ("i>r" if side == "i" else "r>i") and (info.spi_i, info.spi_r) == (old.spi_i, old.spi_r)
    assert info.summary().endswith("[SK{DELETE}]")
    assert a.retired == b.retired == [] and a.state == b.state == IkeState.ESTABLISHED
    assert [c.key for c in a.child_sas()] == children
    # the new IKE SA carries the next exchanges, message ids from 0, I flag from the rekey's initiator
    start = len(w.log)
    b.rekey_child(w.of(other(side), ChildSaEstablished)[0].spi_in, w.now)
    pump(w)
    first = w.log[start][1]
    assert first[:16] == spi_i + spi_r and int.from_bytes(first[20:24], "big") == 0
    assert not first[19] & FLAG_INITIATOR and not b.ike.initiator
    (_, req2), (_, resp2) = [(d, m) for d, m in decoded(w, start) if m.exchange == ExchangeType.CREATE_CHILD_SA]
    keymat_oracle(w, w.of(side, ChildSaEstablished)[-1], req2, resp2)  # with the new SK_d
    works(w.of(side, ChildSaEstablished)[-1], w.of(other(side), ChildSaEstablished)[-1])


def test_ike_rekey_then_close_deletes_the_new_ike_sa():
    w = setup()
    w.r.rekey_ike(w.now)
    pump(w)
    w.i.close(w.now)
    pump(w)
    assert w.i.state == w.r.state == IkeState.CLOSED and not w.of("i", IkeSaFailed)


# -- lifetimes, DPD, keepalives, addresses ---------------------------------------------------------------------


def test_child_sa_lifetimes_rekey_softly_with_jitter_and_expire_hard():
    w = setup(child_rekey_time=100.0, child_life_time=150.0, rekey_jitter=10.0,
              r_child_rekey_time=None, r_child_life_time=None, r_rekey_jitter=0.0)
    first = w.of("i", ChildSaEstablished)[0]
    assert 90.0 <= w.i.get_timer() <= 100.0  # type: ignore[operator]
    w.run_timers(until=100.0)
    (rekeyed,) = [e for e in w.of("i", ChildSaEstablished) if e.rekeyed == first.spi_in]
    assert 90.0 <= w.now <= 100.0 and [c.key for c in w.i.child_sas()] == [rekeyed.spi_in]
    # the responder alone has a hard lifetime: it deletes the pair
    w2 = setup(r_child_life_time=50.0)
    w2.run_timers(until=60.0)
    assert w2.now == 50.0 and not w2.i.child_sas() and not w2.r.child_sas()
    assert w2.of("i", ChildSaDeleted)[0].by_peer and not w2.of("r", ChildSaDeleted)[0].by_peer


def test_ike_sa_lifetimes_rekey_and_then_delete():
    w = setup(ike_rekey_time=300.0, ike_life_time=400.0, r_ike_rekey_time=None, r_ike_life_time=None)
    w.run_timers(until=350.0)
    assert len(w.of("i", IkeSaRekeyed)) == 1 and w.i.state == IkeState.ESTABLISHED and len(w.i.child_sas()) == 1
    w2 = setup(r_ike_life_time=100.0)
    w2.run_timers(until=200.0)
    assert w2.i.state == w2.r.state == IkeState.CLOSED


@pytest.mark.parametrize("side", SIDES)
def test_dead_peer_detection_checks_an_idle_peer_and_declares_a_silent_one_dead(side):
    cfg = {"dpd_delay": 30.0} if side == "i" else {"r_dpd_delay": 30.0}
    w = setup(**cfg, retransmit_tries=3, r_retransmit_tries=3)
    a = conn(w, side)
    assert a.get_timer() == 30.0
    w.run_timers(until=45.0)  # the peer answers: the next check comes 30 s after it was last heard
    assert a.state == IkeState.ESTABLISHED and a.get_timer() == 60.0 and a.counters.retransmits == 0
    w.deliver = lambda direction, _d: direction == ("i>r" if side == "i" else "r>i")  # the peer goes silent
    w.run_timers(until=100.0)
    (dead,) = w.of(side, DeadPeer)
    assert "INFORMATIONAL" in dead.reason and a.state == IkeState.FAILED and w.of(side, IkeSaFailed)
    assert w.now == 60.0 + 1.0 + 1.8 + 1.8 ** 2 and a.get_timer() is None


def test_nat_keepalives_and_datagram_destinations():
    w = handshake(*configs(local_endpoint=("198.51.100.10", 500), remote_endpoint=("203.0.113.130", 500),
                           r_local_endpoint=("203.0.113.130", 500)),
                  sources={"i>r": ("203.0.113.129", 1024), "r>i": ("203.0.113.130", 500)})
    assert w.i.use_natt and w.i.get_timer() == 20.0 and w.r.get_timer() is None  # only the side behind the NAT
    w.now = 20.0
    w.i.handle_timer(w.now)
    (ka,) = w.i.datagrams_to_send(w.now)
    assert ka.keepalive and ka.natt and ka.payload() == b"\xff" and ka.addr == ("203.0.113.130", 4500)
    assert w.i.get_timer() == 40.0
    w.i.check_liveness(w.now)  # a request behind the NAT: to the peer's port 4500, with the non-ESP marker
    (req,) = w.i.datagrams_to_send(w.now)
    assert req.natt and req.addr == ("203.0.113.130", 4500) and req.payload()[:4] == bytes(4)
    w.r.receive_datagram(req.data, w.now, ("203.0.113.129", 1025), natt=True)
    (resp,) = w.r.datagrams_to_send(w.now)  # back the way it came: the NAT's mapping of our port 4500
    assert resp.natt and resp.addr == ("203.0.113.129", 1025)
    w.i.receive_datagram(resp.data, w.now, ("203.0.113.130", 4500), natt=True)
    assert w.i.get_timer() == 40.0 and w.i.state == IkeState.ESTABLISHED
    w.r.check_liveness(w.now)  # the responder's request follows the mapping it learned
    (r_req,) = w.r.datagrams_to_send(w.now)
    assert r_req.natt and r_req.addr == ("203.0.113.129", 1025)


def test_requests_wait_for_the_window_and_the_queue_is_bounded():
    w = setup()
    spi = w.of("i", ChildSaEstablished)[0].spi_in
    w.i.create_child(w.now)
    w.i.rekey_child(spi, w.now)
    w.i.rekey_ike(w.now)
    (in_flight,) = w.i.datagrams_to_send(w.now)  # RFC 7296 2.3: one request in flight
    w.i.create_child(w.now)
    w.i.create_child(w.now)  # four wait
    before = dict(w.i.children)
    with pytest.raises(LocalProtocolError, match="requests already wait"):
        w.i.create_child(w.now)
    assert w.i.children == before  # refused before anything changed
    w.log.clear()
    w.r.receive_datagram(in_flight.data, w.now)
    pump(w)
    assert len(w.i.child_sas()) == len(w.r.child_sas()) == 4 and len(w.of("i", IkeSaRekeyed)) == 1
    assert w.i.get_timer() is None and not w.of("i", ChildSaFailed) and not w.of("r", ChildSaFailed)


def test_get_timer_is_the_earliest_deadline():
    w = setup(dpd_delay=50.0, child_rekey_time=40.0, ike_rekey_time=30.0)
    assert w.i.get_timer() == 30.0
    w.i.check_liveness(w.now)
    assert w.i.get_timer() == 1.0  # the retransmission comes first; DPD waits while a request is out


# -- simultaneous rekeys (RFC 7296 2.8.1, 2.8.2) ---------------------------------------------------------------


def _rigged(w: Wire, loser: str) -> None:
    """Make the first nonce ``loser`` makes from now on (the Ni of the rekey it starts) start with 0x00, its
    other random bytes with 0xff and the other side's with 0x80: the lowest of the four nonces is then in the
    exchange ``loser`` starts, whatever the rest."""
    first = [True]

    def loser_rng(n: int) -> bytes:
        lead = 0xFF
        if n == 32 and first[0]:
            first[0], lead = False, 0x00
        return bytes([lead]) + os.urandom(n - 1)

    conn(w, loser).rng = loser_rng
    conn(w, other(loser)).rng = lambda n: b"\x80" + os.urandom(n - 1)


def _collision_exchanges(w: Wire, start: int) -> dict[str, tuple[bytes, bytes]]:
    """For each side, the (Ni, Nr) of the CREATE_CHILD_SA exchange it started, read off the wire."""
    msgs = [(d, m) for d, m in decoded(w, start) if m.exchange == ExchangeType.CREATE_CHILD_SA]
    out = {}
    for starter, req_dir in (("i", "i>r"), ("r", "r>i")):
        (req,) = [m for d, m in msgs if d == req_dir and not m.response]
        (resp,) = [m for d, m in msgs if d != req_dir and m.response]
        nonce = [next(p for p in m.all_payloads() if isinstance(p, NoncePayload)).data for m in (req, resp)]
        out[starter] = (nonce[0], nonce[1])
    return out


@pytest.mark.parametrize("expected_loser", SIDES)
def test_simultaneous_child_sa_rekeys_keep_one_new_pair_chosen_by_the_lowest_nonce(expected_loser):
    w = setup()
    _rigged(w, expected_loser)
    ci, cr = w.of("i", ChildSaEstablished)[0], w.of("r", ChildSaEstablished)[0]
    start = len(w.log)
    w.i.rekey_child(ci.spi_in, w.now)
    w.r.rekey_child(cr.spi_in, w.now)  # both requests cross
    pump(w)
    nonces = _collision_exchanges(w, start)
    loser = min(nonces, key=lambda side: min(nonces[side]))  # whose exchange holds the lowest of the four
    assert loser == expected_loser
    winner = other(loser)
    made = {side: [e for e in w.of(side, ChildSaEstablished) if e.rekeyed] for side in SIDES}
    assert len(made["i"]) == len(made["r"]) == 2  # each side took part in both exchanges
    (survivor_i,), (survivor_r,) = w.i.child_sas(), w.r.child_sas()
    assert (survivor_i.key, int.from_bytes(survivor_i.spi_out, "big")) == (
        int.from_bytes(survivor_r.spi_out, "big"), survivor_r.key)
    # the survivor is the pair made by the winner's exchange: its inbound SPI on the winner is the one it offered
    winner_conn = conn(w, winner)
    winner_new = [e for e in made[winner] if e.spi_in in {survivor_i.key, survivor_r.key}]
    assert len(winner_new) == 1 and winner_conn.child_sas()[0].key == winner_new[0].spi_in
    # deletes: the loser deletes its redundant pair, the winner the old one; nothing failed
    deleted_by_loser = [e for e in w.of(loser, ChildSaDeleted) if not e.by_peer]
    deleted_by_winner = [e for e in w.of(winner, ChildSaDeleted) if not e.by_peer]
    assert len(deleted_by_loser) == len(deleted_by_winner) == 1
    old_on_winner = (ci if winner == "i" else cr).spi_in
    assert deleted_by_winner[0].spi_in == old_on_winner
    assert not w.of("i", ChildSaFailed) and not w.of("r", ChildSaFailed)
    works(survivor_i.sa, survivor_r.sa)  # type: ignore[arg-type]
    assert w.i.get_timer() is None and w.r.get_timer() is None


@pytest.mark.parametrize("expected_loser", SIDES)
def test_simultaneous_ike_rekeys_keep_one_new_ike_sa_chosen_by_the_lowest_nonce(expected_loser):
    w = setup()
    _rigged(w, expected_loser)
    old = (w.i.spi_i, w.i.spi_r)
    start = len(w.log)
    w.i.rekey_ike(w.now)
    w.r.rekey_ike(w.now)
    pump(w)
    nonces = _collision_exchanges(w, start)
    loser = min(nonces, key=lambda side: min(nonces[side]))
    assert loser == expected_loser
    winner = other(loser)
    assert w.i.state == w.r.state == IkeState.ESTABLISHED and w.i.retired == w.r.retired == []
    assert (w.i.spi_i, w.i.spi_r) == (w.r.spi_i, w.r.spi_r) != old
    assert conn(w, winner).ike.initiator and not conn(w, loser).ike.initiator  # the winner started the survivor
    (rw,), (rl,) = w.of(winner, IkeSaRekeyed), w.of(loser, IkeSaRekeyed)
    assert not rw.by_peer and rl.by_peer and (rw.spi_i, rw.spi_r) == (rl.spi_i, rl.spi_r) == (w.i.spi_i, w.i.spi_r)
    assert len(w.i.child_sas()) == len(w.r.child_sas()) == 1
    assert not w.of("i", IkeSaFailed) and not w.of("r", IkeSaFailed)
    w.r.rekey_child(w.r.child_sas()[0].key, w.now)  # the surviving IKE SA works
    pump(w)
    assert len(w.of("i", ChildSaDeleted)) == 1 and w.i.get_timer() is None and w.r.get_timer() is None


def test_an_ike_rekey_during_our_child_sa_exchange_gets_temporary_failure():
    w = setup()
    w.i.create_child(w.now)
    w.r.rekey_ike(w.now)
    pump(w)
    (failed,) = w.of("r", IkeSaRekeyFailed)
    assert failed.notify == NotifyType.TEMPORARY_FAILURE and failed.remote
    assert len(w.i.child_sas()) == 2 and w.i.state == w.r.state == IkeState.ESTABLISHED


def test_a_half_open_ike_sa_expires_on_the_responder():
    w = Wire(*configs(r_half_open_timeout=30.0), deliver=lambda direction, _d: direction == "i>r")
    w.i.initiate(w.now)
    w.pump()  # the IKE_SA_INIT response is lost; the initiator's IKE_AUTH never comes
    assert w.r.state == IkeState.INIT_DONE and w.r.get_timer() == 30.0
    w.r.handle_timer(29.0)
    assert w.r.state == IkeState.INIT_DONE
    w.r.handle_timer(30.0)
    w.collect()
    (failed,) = w.of("r", IkeSaFailed)
    assert "half-open" in failed.reason and w.r.state == IkeState.FAILED and w.r.get_timer() is None


def test_a_rekey_crossing_the_delete_of_its_pair_gets_child_sa_not_found():
    """RFC 7296 2.25: the pair is being deleted by the peer when our rekey of it arrives."""
    w = setup()
    ci, cr = w.of("i", ChildSaEstablished)[0], w.of("r", ChildSaEstablished)[0]
    w.i.delete_child(ci.spi_in, w.now)
    w.r.rekey_child(cr.spi_in, w.now)  # the two requests cross
    pump(w)
    (failed,) = w.of("r", ChildSaFailed)
    assert failed.notify == NotifyType.CHILD_SA_NOT_FOUND and failed.remote
    assert not w.i.children and not w.r.children and w.i.state == w.r.state == IkeState.ESTABLISHED
    assert w.of("i", ChildSaDeleted) == [ChildSaDeleted(ci.spi_in, ci.spi_out, by_peer=False)]
    assert w.of("r", ChildSaDeleted) == [ChildSaDeleted(cr.spi_in, cr.spi_out, by_peer=True)]


@pytest.mark.parametrize("unit", ["bytes", "packets"])
def test_child_sa_volume_limits_rekey_and_then_delete(unit):
    w = setup(**{f"child_rekey_{unit}": 1000, f"child_life_{unit}": 2000})
    first = w.of("i", ChildSaEstablished)[0]

    def usage(spi: int, n: int) -> None:
        w.i.child_usage(spi, n if unit == "bytes" else 0, n if unit == "packets" else 0, w.now)
        pump(w)

    usage(first.spi_in, 999)
    assert [c.key for c in w.i.child_sas()] == [first.spi_in]
    usage(first.spi_in, 1000)  # soft: rekeyed once, however often the counters are reported after
    usage(first.spi_in, 1500)
    (new,) = [e for e in w.of("i", ChildSaEstablished) if e.rekeyed == first.spi_in]
    assert [c.key for c in w.i.child_sas()] == [new.spi_in] and len(w.of("i", ChildSaEstablished)) == 2
    usage(first.spi_in, 5000)  # the old pair is gone: a late report of it changes nothing
    usage(new.spi_in, 2000)  # hard: deleted
    assert not w.i.child_sas() and not w.r.child_sas() and w.i.state == IkeState.ESTABLISHED
