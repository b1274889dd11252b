"""DANE, MTA-STS, SPF/DMARC/TLS-RPT: lookups and verdicts per domain and MX host.
May import scanner.model, config, sink, inputs, dns, tls and smtp."""
