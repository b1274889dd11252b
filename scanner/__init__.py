"""STARTTLS survey scanner: domains -> MX -> SMTP/STARTTLS -> TLS and certificates -> Parquet."""

__version__ = "0.1.0"
