"""STARTTLS survey scanner: domains -> MX -> SMTP/STARTTLS -> TLS and certificates -> Parquet.

Packages by concern, imported one way (tests/test_layout.py): model < config < sink <
{inputs, dns, tls} < smtp < policy < scan < analysis < report < commands; the lab apart.
"""

import os

# numpy (imported by pyarrow and the packed tables) starts OpenBLAS worker threads that spin
# while it loads: 0.1-0.2 s of CPU on every start, and the scanner never does linear algebra.
# Set before anything imports numpy; a value the user set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
