"""The pytest side: the module-scoped ``slurm`` fixture, and skipping (or failing, with
``SHARDLENS_REQUIRE_SLURM=1``) where Slurm cannot run. Imports pytest lazily, so the rest of
the package stays usable without it."""

from __future__ import annotations

from collections.abc import Iterator

from .cluster import SlurmCluster, slurm_cluster
from .host import skip_reason


def require_or_skip() -> None:
    """pytest.skip when Slurm cannot run here (fail instead if SHARDLENS_REQUIRE_SLURM=1)."""
    from conftest import skip_unless_available

    reason = skip_reason()
    if reason is not None:
        skip_unless_available("SLURM", reason)


try:
    import pytest as _pytest
except ImportError:  # pragma: no cover
    _pytest = None

if _pytest is not None:

    @_pytest.fixture(scope="module")
    def slurm() -> Iterator[SlurmCluster]:
        """A real Slurm cluster per test module (start-up takes ~1 s); skips when
        not root / binaries missing (fails instead with SHARDLENS_REQUIRE_SLURM=1)."""
        require_or_skip()
        with slurm_cluster() as cluster:
            yield cluster
