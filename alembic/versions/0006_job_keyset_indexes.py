"""job lists by build time: (…, time, id) indexes; body digest index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 21:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (old index, its columns) -> (new index, its columns): lists page on (time, id) now.
_REPLACED = (
    (("ix_job_branch_id", ["branch", "id"]), ("ix_job_branch_time", ["branch", "time", "id"])),
    (("ix_job_dataset_id", ["dataset", "id"]), ("ix_job_dataset_time", ["dataset", "time", "id"])),
    (("ix_job_pr_id", ["pr", "id"]), ("ix_job_pr_time", ["pr", "time", "id"])),
    (("ix_job_time", ["time"]), ("ix_job_time_id", ["time", "id"])),
)


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        for (old, _), (new, columns) in _REPLACED:
            batch_op.drop_index(old)
            batch_op.create_index(new, columns, unique=False)
        batch_op.create_index("ix_job_body_sha256", ["body_sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_body_sha256")
        for (old, old_columns), (new, _) in _REPLACED:
            batch_op.drop_index(new)
            batch_op.create_index(old, old_columns, unique=False)
