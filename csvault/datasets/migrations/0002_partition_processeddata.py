"""Hash-partition ProcessedData by dataset on PostgreSQL (nothing to do on SQLite).

16 partitions: a dataset's rows always land in one partition, so its reads,
COPY and delete touch one table and one index of ~1/16 of the total; VACUUM
and index maintenance work on partitions of manageable size; and concurrent
ingests of different datasets mostly write to different partitions. More
partitions buy little at this scale (each adds planning cost to queries that
are not pruned to one dataset); changing the count later means re-creating
the table, which this migration shows how to do.
"""

from django.db import migrations

PARTITIONS = 16
TABLE = "datasets_processeddata"


def partition(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    old = f"{TABLE}_unpartitioned"
    statements = [
        f"ALTER TABLE {TABLE} RENAME TO {old}",
        f"ALTER TABLE {old} RENAME CONSTRAINT {TABLE}_pkey TO {old}_pkey",
        f"CREATE TABLE {TABLE} (dataset_id uuid NOT NULL, row_number bigint NOT NULL, "
        f"data bytea NOT NULL, CONSTRAINT {TABLE}_pkey PRIMARY KEY (dataset_id, row_number)) "
        "PARTITION BY HASH (dataset_id)",
        *(
            f"CREATE TABLE {TABLE}_p{i:02d} PARTITION OF {TABLE} "
            f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})"
            for i in range(PARTITIONS)
        ),
        f"INSERT INTO {TABLE} (dataset_id, row_number, data) "
        f"SELECT dataset_id, row_number, data FROM {old}",
        f"DROP TABLE {old}",
    ]
    with schema_editor.connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("datasets", "0001_initial")]

    operations = [migrations.RunPython(partition, migrations.RunPython.noop, elidable=False)]
