"""What the durability tests check a state database with after the abuse."""

from __future__ import annotations

from pathlib import Path

from tmax_core.store import Store


def integrity_check(state_dir: Path) -> str:
    """``PRAGMA integrity_check`` of ``state.db`` (``"ok"`` when healthy),
    after opening it the way the node does (so it also opens and migrates)."""
    store = Store.open(state_dir / "state.db")
    try:
        return "\n".join(str(r[0]) for r in store.conn.execute("PRAGMA integrity_check"))
    finally:
        store.close()
