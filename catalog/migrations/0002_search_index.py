"""A SQLite FTS5 index over the catalog, kept in step by triggers (other databases search with LIKE).

`source` and `model_type` are indexed too, so `source:ollama` style queries work on the index itself.
"""

from django.db import migrations

FTS_TABLE = "catalog_catalogmodel_fts"
CREATE = [
    f"""CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(
        model_id, name, description, tags, source, model_type,
        content='catalog_catalogmodel', content_rowid='id', tokenize='unicode61'
    )""",
    f"""CREATE TRIGGER catalog_fts_insert AFTER INSERT ON catalog_catalogmodel BEGIN
        INSERT INTO {FTS_TABLE}(rowid, model_id, name, description, tags, source, model_type)
        VALUES (new.id, new.model_id, new.name, new.description, new.tags, new.source, new.model_type);
    END""",
    f"""CREATE TRIGGER catalog_fts_delete AFTER DELETE ON catalog_catalogmodel BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, model_id, name, description, tags, source, model_type)
        VALUES ('delete', old.id, old.model_id, old.name, old.description, old.tags, old.source, old.model_type);
    END""",
    f"""CREATE TRIGGER catalog_fts_update AFTER UPDATE OF model_id, name, description, tags, source, model_type
        ON catalog_catalogmodel BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, model_id, name, description, tags, source, model_type)
        VALUES ('delete', old.id, old.model_id, old.name, old.description, old.tags, old.source, old.model_type);
        INSERT INTO {FTS_TABLE}(rowid, model_id, name, description, tags, source, model_type)
        VALUES (new.id, new.model_id, new.name, new.description, new.tags, new.source, new.model_type);
    END""",
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')",
]
DROP = [
    "DROP TRIGGER IF EXISTS catalog_fts_insert",
    "DROP TRIGGER IF EXISTS catalog_fts_delete",
    "DROP TRIGGER IF EXISTS catalog_fts_update",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "sqlite":
            for statement in statements:
                schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
