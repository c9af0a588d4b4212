"""ipseclab's ESP/AH against the Linux kernel's (User-Mode Linux 6.1), both directions, every algorithm.

For each algorithm x mode x encapsulation x ESN: the guest kernel gets an SA pair with keys we
chose (``ip xfrm state``), pings across it, and every packet the kernel made must decrypt in
ipseclab to the ICMP echo request it sent.  Then ipseclab makes echo requests with the inbound
SA and injects them: the kernel must accept them (its SA counters rise, no integrity or replay
failures) and answer, and its answers must decrypt in ipseclab to echo replies.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ipseclab.esp import AhSA, EspSA
from ipseclab.lab.kernel_peer import KernelPeer, KernelSa
from ipseclab.pcap.reader import IPPROTO_AH, IPPROTO_ESP, IPPROTO_UDP, IpPacket, read_ip

pytestmark = pytest.mark.interop


@dataclass(frozen=True)
class Alg:
    name: str
    aead: tuple[str, int, int] | None = None  # kernel name, key bytes (with salt), ICV bits
    enc: tuple[str, int] | None = None
    auth: tuple[str, int, int] | None = None  # kernel name, key bytes, truncation bits


ESP_ALGS = [
    Alg("aes128gcm16", aead=("rfc4106(gcm(aes))", 20, 128)),
    Alg("aes192gcm12", aead=("rfc4106(gcm(aes))", 28, 96)),
    Alg("aes256gcm8", aead=("rfc4106(gcm(aes))", 36, 64)),
    Alg("aes256gcm16", aead=("rfc4106(gcm(aes))", 36, 128)),
    Alg("chacha20poly1305", aead=("rfc7539esp(chacha20,poly1305)", 36, 128)),
    Alg("aes128gmac", aead=("rfc4543(gcm(aes))", 20, 128)),
    Alg("aes128-sha1", enc=("cbc(aes)", 16), auth=("hmac(sha1)", 20, 96)),
    Alg("aes256-sha256", enc=("cbc(aes)", 32), auth=("hmac(sha256)", 32, 128)),
    Alg("aes192-sha384", enc=("cbc(aes)", 24), auth=("hmac(sha384)", 48, 192)),
    Alg("aes128-sha512", enc=("cbc(aes)", 16), auth=("hmac(sha512)", 64, 256)),
    Alg("null-sha256", enc=("ecb(cipher_null)", 0), auth=("hmac(sha256)", 32, 128)),
]
AH_ALGS = [
    Alg("ah-sha1", auth=("hmac(sha1)", 20, 96)),
    Alg("ah-sha256", auth=("hmac(sha256)", 32, 128)),
    Alg("ah-sha384", auth=("hmac(sha384)", 48, 192)),
    Alg("ah-sha512", auth=("hmac(sha512)", 64, 256)),
    Alg("ah-aesxcbc", auth=("xcbc(aes)", 16, 96)),
]

CASES = (
    [pytest.param(a, "esp", mode, False, esn, id=f"{a.name}-{mode}{'-esn' if esn else ''}")
     for a in ESP_ALGS for mode in ("tunnel", "transport") for esn in (False, True)]
    + [pytest.param(a, "esp", "tunnel", True, False, id=f"{a.name}-tunnel-udp") for a in ESP_ALGS]
    + [pytest.param(a, "ah", mode, False, esn, id=f"{a.name}-{mode}{'-esn' if esn else ''}")
       for a in AH_ALGS for mode in ("tunnel", "transport") for esn in (False, True)]
)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelPeer]:
    run_dir = Path(__file__).resolve().parents[2] / "runs" / f"esp-kernel-{os.getpid()}"
    with KernelPeer(run_dir) as kp:
        kp.open_natt_socket()
        yield kp


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(src: str, dst: str, ident: int, seq: int) -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"ipseclab-kernel-crosscheck"
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, 1, 0,
                       bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return head[:10] + struct.pack("!H", _csum(head)) + head[12:] + icmp


def _keys(alg: Alg) -> dict[str, tuple]:
    out = {}
    if alg.aead:
        out["aead"] = (alg.aead[0], os.urandom(alg.aead[1]), alg.aead[2])
    if alg.enc:
        out["enc"] = (alg.enc[0], os.urandom(alg.enc[1]))
    if alg.auth:
        out["auth"] = (alg.auth[0], os.urandom(alg.auth[1]), alg.auth[2])
    return out


def _sa(proto: str, spi: int, keys: dict[str, tuple], **kw) -> EspSA | AhSA:
    if proto == "ah":
        return AhSA.from_xfrm(spi, auth=keys["auth"], **kw)
    return EspSA.from_xfrm(spi, **keys, **kw)


def _captured(kp: KernelPeer, spi: int, skip: int) -> list[IpPacket]:
    """IP packets of the capture carrying ``spi`` (ESP, ESP in UDP, AH), after the first ``skip`` frames."""
    out = []
    for p in read_ip(kp.pcap):
        if not isinstance(p, IpPacket) or p.frame <= skip:
            continue
        body = p.payload
        if p.proto == IPPROTO_UDP and len(body) >= 16 and body[8:12] != b"\0\0\0\0":
            body = body[8:]
        elif p.proto == IPPROTO_AH and len(body) >= 8:
            body = body[4:]
        elif p.proto != IPPROTO_ESP:
            continue
        if int.from_bytes(body[:4], "big") == spi:
            out.append(p)
    return out


def _frames(kp: KernelPeer) -> int:
    return sum(1 for _ in read_ip(kp.pcap))


@pytest.mark.parametrize(("alg", "proto", "mode", "udp", "esn"), CASES)
def test_kernel_and_ipseclab_agree(kernel: KernelPeer, alg: Alg, proto: str, mode: str, udp: bool, esn: bool):
    left, right = kernel.left_address, kernel.right_address
    spi_out = int.from_bytes(os.urandom(4), "big") | 0x1000
    spi_in = int.from_bytes(os.urandom(4), "big") | 0x1000
    k_out, k_in = _keys(alg), _keys(alg)
    encap = (4500, 4500) if udp else None
    kernel.install(
        KernelSa(left, right, spi_out, proto, mode, encap=encap, esn=esn, **k_out),
        KernelSa(right, left, spi_in, proto, mode, encap=encap, esn=esn, **k_in),
    )
    kw = {"mode": mode, "esn": esn, "replay_window": 32}
    if mode == "tunnel":
        kw["tunnel"] = (left, right)
    if udp:
        kw["udp"] = True
    ours_out = _sa(proto, spi_out, k_out, **kw)  # decrypts what the kernel sends
    kw_in = dict(kw, tunnel=(right, left)) if mode == "tunnel" else kw
    ours_in = _sa(proto, spi_in, k_in, **kw_in)  # makes what the kernel receives
    skip = _frames(kernel)

    # 1. kernel -> ipseclab
    kernel.ping_out(2)
    sent = _captured(kernel, spi_out, skip)
    assert len(sent) == 2, f"expected 2 {proto.upper()} packets from the kernel with SPI {spi_out:#x}, got {len(sent)}"
    for p in sent:
        inner = ours_out.unprotect(p.packet)
        assert inner is not None, f"frame {p.frame}: ipseclab dropped the kernel's packet"
        assert inner[9] == 1 and inner[20] == 8, f"frame {p.frame}: not an ICMP echo request: {inner[:28].hex()}"
        assert inner[12:16] == bytes(map(int, left.split("."))) and inner[16:20] == bytes(map(int, right.split(".")))

    # 2. ipseclab -> kernel, and the kernel's replies back through ipseclab
    skip = _frames(kernel)
    packets = [ours_in.protect(echo_request(right, left, 0x1234, seq)) for seq in (1, 2)]
    kernel.inject(packets, wait=0.8)
    state = {s.spi: s for s in kernel.states()}[spi_in]
    assert state.counters.get("packets") == 2, f"kernel SA {spi_in:#x} counters: {state.counters}"
    assert state.counters.get("failed", 0) == 0 and state.counters.get("replay", 0) == 0, state.counters
    replies = _captured(kernel, spi_out, skip)
    assert len(replies) == 2, f"expected the kernel's 2 echo replies on SPI {spi_out:#x}, got {len(replies)}"
    for p in replies:
        inner = ours_out.unprotect(p.packet)
        assert inner is not None and inner[20] == 0, f"frame {p.frame}: not an ICMP echo reply"
