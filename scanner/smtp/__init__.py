"""One SMTP conversation with one address -> SmtpProbe: its steps, statuses, EHLO parsing.
May import scanner.model, config, sink, inputs, dns and tls."""
