"""EAP peer and server state machines for IKEv2 (RFC 7296 2.16): Identity, Nak, MD5-Challenge, MSCHAPv2.

Both are sans-I/O like the engine: ``EapPeer.receive(request) -> response`` and
``EapServer.start() / receive(response) -> request``, bytes in and out, the random source injected.  The IKE
exchange module carries the bytes in EAP payloads and asks ``outcome`` and ``msk`` once the server has said
Success or Failure.

EAP-MSCHAPv2 follows draft-kamath-pppext-eap-mschapv2 (as strongSwan and hostapd do): OpCode, MS-CHAPv2-ID,
MS-Length, then Challenge (1), Response (2), Success (3) or Failure (4).  The peer checks the server's
authenticator response (``S=...``) before it answers Success, so MSCHAPv2 authenticates the server too (a
mutual method, which RFC 5998's EAP-only authentication needs).  EAP-MD5 (RFC 3748 5.4) is one-way and makes
no MSK: the IKE AUTH that follows then uses SK_pi/SK_pr as its shared key (RFC 7296 2.16).
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from ...crypto import mschapv2
from ...crypto.random import RandomSource
from ...errors import DecodeError, RemoteProtocolError
from ...packets.enums import NotifyType
from ..auth.credentials import EapClient, EapServer
from .packet import METHOD_NAMES, METHOD_TYPES, EapCode, EapPacket, EapType, decode

_OP_CHALLENGE, _OP_RESPONSE, _OP_SUCCESS, _OP_FAILURE = 1, 2, 3, 4
_MS = struct.Struct("!BBH")  # OpCode, MS-CHAPv2-ID, MS-Length
_FAILED = NotifyType.AUTHENTICATION_FAILED


def _refuse(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason, _FAILED)


def _ms(op: int, ms_id: int, body: bytes) -> bytes:
    return _MS.pack(op, ms_id, 4 + len(body)) + body


def _user(identity: bytes) -> bytes:
    """The MS-CHAPv2 user name: the identity without a ``DOMAIN\\`` prefix (RFC 2759 8.2)."""
    return identity.rsplit(b"\\", 1)[-1]


@dataclass(slots=True)
class EapPeer:
    """The initiator's side: answers each request; ``done`` after EAP-Success, RemoteProtocolError on Failure."""

    config: EapClient
    identity: bytes
    rng: RandomSource
    method: str = ""
    msk: bytes = b""
    done: bool = False
    _peer_challenge: bytes = b""
    _nt_response: bytes = b""
    _auth_challenge: bytes = b""
    _server_ok: bool = False
    _failure: str = ""  # the MSCHAPv2 Failure message (E=691 ...), reported with the EAP-Failure

    def receive(self, data: bytes) -> bytes | None:
        """The response to a request (None after EAP-Success); raises for EAP-Failure or a bad server."""
        pkt = decode(data)
        if pkt.code == EapCode.SUCCESS:
            if self.method == "mschapv2" and not self._server_ok:
                raise _refuse("EAP-Success before the MSCHAPv2 server proved it knows the password")
            if not self.method:
                raise _refuse("EAP-Success before any EAP method ran")
            self.done = True
            return None
        if pkt.code == EapCode.FAILURE:
            detail = f": {self._failure}" if self._failure else ""
            raise RemoteProtocolError(f"the EAP server sent EAP-Failure ({self.method or 'no method'}{detail}): "
                                      f"wrong identity or password?", _FAILED, from_peer=True)
        if pkt.code != EapCode.REQUEST:
            raise DecodeError(f"{pkt.describe()} sent to the EAP peer")
        if pkt.type == EapType.IDENTITY:
            return self._answer(pkt, self.identity)
        name = METHOD_NAMES.get(EapType(pkt.type)) if pkt.type in METHOD_NAMES else None
        if name is None or name not in self.config.methods:
            wanted = bytes(METHOD_TYPES[m] for m in self.config.methods)
            return EapPacket(EapCode.RESPONSE, pkt.identifier, EapType.NAK, wanted).encode()
        if self.method and name != self.method:
            raise _refuse(f"the EAP server switched from {self.method} to {name}")
        self.method = name
        if name == "md5":
            return self._md5(pkt)
        return self._mschapv2(pkt)

    def _answer(self, pkt: EapPacket, data: bytes) -> bytes:
        return EapPacket(EapCode.RESPONSE, pkt.identifier, pkt.type, data).encode()

    def _md5(self, pkt: EapPacket) -> bytes:
        if not pkt.data or pkt.data[0] + 1 > len(pkt.data):
            raise DecodeError("EAP-MD5 challenge with a bad Value-Size")
        challenge = pkt.data[1 : 1 + pkt.data[0]]
        value = mschapv2.chap_md5(pkt.identifier, self.config.password.encode(), challenge)
        return self._answer(pkt, bytes((len(value),)) + value + self.identity)

    def _mschapv2(self, pkt: EapPacket) -> bytes:
        if len(pkt.data) < 4:
            raise DecodeError("EAP-MSCHAPv2 request shorter than its 4-byte header")
        op, ms_id, _length = _MS.unpack_from(pkt.data)
        body = pkt.data[4:]
        if op == _OP_CHALLENGE:
            if len(body) < 17 or body[0] != 16:
                raise DecodeError("EAP-MSCHAPv2 Challenge without a 16-byte challenge")
            self._auth_challenge = body[1:17]
            self._peer_challenge = self.rng(16)
            self._nt_response = mschapv2.generate_nt_response(self._auth_challenge, self._peer_challenge,
                                                             _user(self.identity), self.config.password)
            value = self._peer_challenge + bytes(8) + self._nt_response + b"\x00"
            return self._answer(pkt, _ms(_OP_RESPONSE, ms_id, bytes((49,)) + value + self.identity))
        if op == _OP_SUCCESS:
            if not self._nt_response:
                raise _refuse("EAP-MSCHAPv2 Success before our Response")
            want = mschapv2.generate_authenticator_response(self.config.password, self._nt_response,
                                                            self._peer_challenge, self._auth_challenge,
                                                            _user(self.identity))
            if not hmac.compare_digest(body[:42], want):
                raise _refuse("the EAP-MSCHAPv2 server's authenticator response does not verify: it does not "
                              "know our password")
            self._server_ok = True
            self.msk = mschapv2.msk(self.config.password, self._nt_response)
            return self._answer(pkt, bytes((_OP_SUCCESS,)))
        if op == _OP_FAILURE:  # acknowledged with the OpCode alone; the server's EAP-Failure ends it
            self._failure = body.decode(errors="replace")
            return self._answer(pkt, bytes((_OP_FAILURE,)))
        raise DecodeError(f"EAP-MSCHAPv2 OpCode {op} sent to the peer")


@dataclass(slots=True)
class EapAuthenticator:
    """The responder's side: ``start()`` gives the first request; ``receive`` the next one, EAP-Success or
    EAP-Failure.  ``outcome`` is None while running, then True or False (``reason`` says why not)."""

    config: EapServer
    identity: bytes  # the initiator's IDi: the EAP identity, as strongSwan's default eap_id
    rng: RandomSource
    outcome: bool | None = None
    reason: str = ""
    msk: bytes = b""
    _id: int = 0
    _challenge: bytes = b""
    _nt_response: bytes = b""
    _password: str | None = None
    _stage: str = "challenge"

    @property
    def method(self) -> str:
        return self.config.method

    def start(self) -> bytes:
        self._id = self.rng(1)[0]
        self._password = self.config.password(self.identity.decode(errors="replace"))
        self._challenge = self.rng(16)
        if self.method == "md5":
            return self._request(EapType.MD5_CHALLENGE, bytes((16,)) + self._challenge + b"ipseclab")
        return self._request(EapType.MSCHAPV2, _ms(_OP_CHALLENGE, self._id, bytes((16,)) + self._challenge
                                                   + b"ipseclab"))

    def _request(self, t: int, data: bytes) -> bytes:
        return EapPacket(EapCode.REQUEST, self._id, t, data).encode()

    def _finish(self, ok: bool, reason: str = "") -> bytes:
        self.outcome, self.reason = ok, reason
        return EapPacket(EapCode.SUCCESS if ok else EapCode.FAILURE, self._id).encode()

    def receive(self, data: bytes) -> bytes:
        """The next request, or EAP-Success / EAP-Failure; DecodeError for a packet that is not an answer."""
        pkt = decode(data)
        if pkt.code != EapCode.RESPONSE or pkt.identifier != self._id or self.outcome is not None:
            raise DecodeError(f"{pkt.describe()} id {pkt.identifier} is not the answer to EAP request {self._id}")
        self._id = (self._id + 1) % 256
        if pkt.type == EapType.NAK:
            wants = ", ".join(METHOD_NAMES.get(EapType(t), str(t)) if t in METHOD_NAMES else str(t) for t in pkt.data)
            return self._finish(False, f"the EAP peer refused EAP-{self.method} (Nak, it wants: {wants or 'none'})")
        if pkt.type != METHOD_TYPES[self.method]:
            raise DecodeError(f"{pkt.describe()} answers an EAP-{self.method} request")
        if self.method == "md5":
            return self._md5(pkt)
        return self._mschapv2(pkt)

    def _unknown_user(self) -> bytes:
        return self._finish(False, f"EAP identity {self.identity.decode(errors='replace')!r} is not a configured "
                                   f"user")

    def _md5(self, pkt: EapPacket) -> bytes:
        if self._password is None:
            return self._unknown_user()
        want = mschapv2.chap_md5((self._id - 1) % 256, self._password.encode(), self._challenge)
        if len(pkt.data) < 17 or pkt.data[0] != 16 or not hmac.compare_digest(pkt.data[1:17], want):
            return self._finish(False, f"EAP-MD5 response of {self.identity.decode(errors='replace')!r} does not "
                                       f"verify: wrong password")
        return self._finish(True)

    def _mschapv2(self, pkt: EapPacket) -> bytes:
        if not pkt.data:
            raise DecodeError("an empty EAP-MSCHAPv2 response")
        op, body = pkt.data[0], pkt.data[4:]  # Success and Failure responses are the OpCode alone
        if self._stage == "challenge" and op == _OP_RESPONSE:
            if len(body) < 50 or body[0] != 49:
                raise DecodeError("EAP-MSCHAPv2 Response without its 49-byte value")
            peer_challenge, nt_response, name = body[1:17], body[25:49], body[50:]
            if self._password is None:
                self._stage = "failure"
                return self._request(EapType.MSCHAPV2, _ms(_OP_FAILURE, self._id, self._failure_text()))
            want = mschapv2.generate_nt_response(self._challenge, peer_challenge, _user(name), self._password)
            if not hmac.compare_digest(nt_response, want):
                self._stage = "failure"
                self.reason = (f"EAP-MSCHAPv2 NT-Response of {self.identity.decode(errors='replace')!r} does not "
                               f"verify: wrong password")
                return self._request(EapType.MSCHAPV2, _ms(_OP_FAILURE, self._id, self._failure_text()))
            self._nt_response = nt_response
            auth = mschapv2.generate_authenticator_response(self._password, nt_response, peer_challenge,
                                                            self._challenge, _user(name))
            self._stage = "success"
            return self._request(EapType.MSCHAPV2, _ms(_OP_SUCCESS, self._id, auth + b" M=welcome"))
        if self._stage == "success" and op == _OP_SUCCESS and self._password is not None:
            self.msk = mschapv2.msk(self._password, self._nt_response)
            return self._finish(True)
        if self._stage == "failure" and op == _OP_FAILURE:
            return self._finish(False, self.reason or f"EAP identity {self.identity.decode(errors='replace')!r} "
                                                      f"is not a configured user")
        raise DecodeError(f"EAP-MSCHAPv2 OpCode {op} in stage {self._stage}")

    def _failure_text(self) -> bytes:
        # E=691 (authentication failure), R=0 (no retry), C=challenge, V=3 (RFC 2759 6)
        return b"E=691 R=0 C=" + self._challenge.hex().upper().encode() + b" V=3 M=Authentication failed"
