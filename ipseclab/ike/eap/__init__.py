"""EAP inside IKE_AUTH (RFC 7296 2.16): the packet codec and the peer and server of each method we speak."""

from .methods import EapAuthenticator, EapPeer
from .packet import EapCode, EapPacket, EapType, decode

__all__ = ["EapAuthenticator", "EapCode", "EapPacket", "EapPeer", "EapType", "decode"]
