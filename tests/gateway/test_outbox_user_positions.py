"""The outbox keeps a BLS 1.1 cuff's sync position per user, in the commit of the readings it covers."""

from __future__ import annotations

from pathlib import Path

from gateway.outbox import Outbox, SyncPosition


def test_each_users_position_is_kept_across_a_restart_and_a_commit_moves_only_the_users_it_names(
    tmp_path: Path,
) -> None:
    """After a gateway restart the cuff's next sync starts from each user's own last record, and a
    later commit that names one user leaves the other user's position as it was."""
    outbox = Outbox(tmp_path / "outbox.db").open()
    outbox.commit([], sync_position=SyncPosition("cuff", 9, {1: 9, 2: 3}))
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.db").open()
    assert reopened.sync_position("cuff") == SyncPosition("cuff", 9, {1: 9, 2: 3})
    reopened.commit([], sync_position=SyncPosition("cuff", 9, {2: 5}))
    assert reopened.sync_position("cuff") == SyncPosition("cuff", 9, {1: 9, 2: 5})
    assert reopened.sync_position("glucose-meter") is None
