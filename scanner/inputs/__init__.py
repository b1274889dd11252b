"""Domain lists -> DomainInput: text, CSV and zone files, compression, IDNA, de-duplication.
May import scanner.model, config and sink (peers: dns, tls)."""
