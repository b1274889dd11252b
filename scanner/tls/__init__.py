"""Handshake facts, certificates, chain verdicts, and the bounded memo of per-chain work.
May import scanner.model, config and sink (peers: inputs, dns)."""
