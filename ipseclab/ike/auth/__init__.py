"""Authentication of IKE_AUTH: who we are, how the peer must prove who it is (``credentials``), the AUTH and
CERT payloads that prove it (``proof``), and what one IKE SA learnt along the way (``state``)."""

from .credentials import EapClient, EapServer, LocalAuth, Psk, PubkeyAuth, RemoteAuth, TrustedCas

__all__ = ["EapClient", "EapServer", "LocalAuth", "Psk", "PubkeyAuth", "RemoteAuth", "TrustedCas"]
