"""One module per IKEv2 exchange; each works on an IkeConnection and its Negotiation."""
