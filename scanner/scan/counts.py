"""Scan counts: one run's, and a whole scan's over every run (for the manifest and summary).

On resume the earlier runs' part comes from the committed data (`committed_counts`), not from
their manifest entries, which a SIGKILL leaves stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scanner.scan.summary import ResumeState


@dataclass(slots=True)
class ScanCounts:
    """Totals of one run, or of a whole scan, for the manifest and the final summary."""

    domains: int = 0
    skipped_resumed: int = 0  # input lines already done when the run started (resume)
    probes: int = 0
    probes_resumed: int = 0  # addresses already probed when the run started (resume)
    certificates: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)

    def plus(self, later: ScanCounts) -> ScanCounts:
        """These counts and a later run's together (what was done before it: the later's)."""
        def merged(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}

        return ScanCounts(domains=self.domains + later.domains,
                          skipped_resumed=later.skipped_resumed,
                          probes=self.probes + later.probes,
                          probes_resumed=later.probes_resumed,
                          certificates=self.certificates + later.certificates,
                          classes=merged(self.classes, later.classes),
                          outcomes=merged(self.outcomes, later.outcomes))

    def to_manifest(self, input_stats: Mapping[str, int]) -> dict[str, object]:
        """The manifest's form of these counts, with the input statistics of the run."""
        return {"domains": self.domains, "domains_resumed": self.skipped_resumed,
                "probes": self.probes, "probes_resumed": self.probes_resumed,
                "certificates": self.certificates,
                "starttls_class": dict(sorted(self.classes.items())),
                "outcome": dict(sorted(self.outcomes.items())), "inputs": dict(input_stats)}


def committed_counts(state: ResumeState) -> ScanCounts:
    """What earlier runs committed, from the data itself: right after a SIGKILL too, when
    their manifest counts are stale."""
    outcomes: dict[str, int] = {}
    for summary in state.hosts.values():
        outcomes[summary.outcome.value] = outcomes.get(summary.outcome.value, 0) + 1
    return ScanCounts(domains=sum(state.classes.values()), probes=len(state.hosts),
                      certificates=len(state.certificates), classes=dict(state.classes),
                      outcomes=outcomes)
