"""Keep row blocks inline and uncompressed on PostgreSQL (nothing to do on SQLite).

Rows are now stored in blocks of about 4 KB (csvault.crypto.rows.seal_blocks). A
tuple over ~2 KB would normally be compressed (pointless: ciphertext does not
compress) and, failing that, moved out of line into the TOAST table - a second
insert and index entry per block. ``toast_tuple_target = 8160`` (the most allowed)
tells PostgreSQL to leave tuples up to a full page alone; bigger ones (a block of
one very large row) are still toasted as before. Storage parameters are set on each
partition: PostgreSQL 15 takes none on the partitioned table itself.
"""

from django.db import migrations

TABLE = "datasets_processeddata"
PARTITIONS = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY c.relname"
)


def _set(target: str):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(PARTITIONS, [TABLE])
            for (name,) in cursor.fetchall():
                cursor.execute(f'ALTER TABLE "{name}" {target}')

    return run


class Migration(migrations.Migration):
    dependencies = [("datasets", "0005_idempotency_key")]

    operations = [
        migrations.RunPython(
            _set("SET (toast_tuple_target = 8160)"),
            _set("RESET (toast_tuple_target)"),
            elidable=False,
        )
    ]
