"""A seeded lab population: domains, MX sets, host behaviours, DNS data, policies, PKI.
May import the scanner packages the lab may; no other part of the lab."""
