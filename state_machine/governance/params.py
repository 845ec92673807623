"""Governance parameters: the optional genesis ``governance`` section.

Absent, governance runs with :data:`DEFAULT_GOVERNANCE` (a chain without the section can still
list markets and change parameters; nothing is stored until a proposal is made, so the state
of such a chain is unchanged until then).
"""

from __future__ import annotations

from state_machine.codec import U32, U64, Wire, wire

PPM = 1_000_000
MAX_VOTING_PERIOD_BLOCKS = 10_000_000
MAX_EXECUTION_DELAY_BLOCKS = 10_000_000
MAX_ACTIVE_PROPOSALS = 64


@wire
class GovernanceParams(Wire):
    """``quorum_ppm``: share of the total voting power that must vote (yes, no or abstain);
    ``threshold_ppm``: share of the yes+no power that yes must exceed; a passed proposal runs
    at the start of block ``voting end + execution_delay_blocks``."""

    WIRE = (
        ("voting_period_blocks", U64),
        ("quorum_ppm", U32),
        ("threshold_ppm", U32),
        ("execution_delay_blocks", U64),
        ("max_active_proposals", U32),
    )
    voting_period_blocks: int = 600
    quorum_ppm: int = 334_000
    threshold_ppm: int = 500_000
    execution_delay_blocks: int = 20
    max_active_proposals: int = 16


DEFAULT_GOVERNANCE = GovernanceParams()


def governance_params_problem(p: GovernanceParams) -> tuple[str, str] | None:
    """(field, reason) of the first unusable parameter, or None."""
    if not 1 <= p.voting_period_blocks <= MAX_VOTING_PERIOD_BLOCKS:
        return "voting_period_blocks", f"between 1 and {MAX_VOTING_PERIOD_BLOCKS}"
    if not 1 <= p.quorum_ppm <= PPM:
        return "quorum_ppm", "between 1 and 1000000"
    if not PPM // 2 <= p.threshold_ppm < PPM:
        return "threshold_ppm", "between 500000 and 999999"
    if not 1 <= p.execution_delay_blocks <= MAX_EXECUTION_DELAY_BLOCKS:
        return "execution_delay_blocks", f"between 1 and {MAX_EXECUTION_DELAY_BLOCKS}"
    if not 1 <= p.max_active_proposals <= MAX_ACTIVE_PROPOSALS:
        return "max_active_proposals", f"between 1 and {MAX_ACTIVE_PROPOSALS}"
    return None
