"""Every DNS question: MX and addresses (c-ares), policy TXT/TLSA (UDP stub), the resolver check.
May import scanner.model, config and sink (peers: inputs, tls)."""
