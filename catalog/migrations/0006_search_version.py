"""A count of the catalog's changes, kept by the database: the search index (catalog/search_index.py) answers only
at the version it was built at. Every insert and delete counts, and every update that changes a searched or sorted
value (a live search stores what the source said again, mostly unchanged), whoever writes it (a sync, the
console, a bulk fill).

SQLite counts each row. PostgreSQL counts each inserting or deleting statement, before it touches a row (a bulk
insert of a million entries takes one count, and the counter's lock is the statement's first), and each row an
update changes.
"""

from django.db import migrations, models

COLUMNS = ["model_id", "name", "description", "tags", "source", "model_type", "downloads", "likes", "trending_score",
           "updated_at"]


def _changed(differs: str) -> str:
    return " OR ".join(f"OLD.{column} {differs} NEW.{column}" for column in COLUMNS)


SQLITE = {
    "create": [
        "INSERT INTO catalog_searchversion (id, version) VALUES (1, 0)",
        *(f"""CREATE TRIGGER catalog_version_{name} AFTER {event} ON catalog_catalogmodel {when} BEGIN
                UPDATE catalog_searchversion SET version = version + 1 WHERE id = 1;
            END""" for name, event, when in (("insert", "INSERT", ""), ("delete", "DELETE", ""),
                                            ("update", "UPDATE", f"WHEN {_changed('IS NOT')}"))),
    ],
    "drop": [f"DROP TRIGGER IF EXISTS catalog_version_{name}" for name in ("insert", "delete", "update")],
}
POSTGRESQL = {
    "create": [
        "INSERT INTO catalog_searchversion (id, version) VALUES (1, 0)",
        """CREATE FUNCTION catalog_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE catalog_searchversion SET version = version + 1 WHERE id = 1;
                RETURN NULL;
            END $$""",
        """CREATE TRIGGER catalog_version BEFORE INSERT OR DELETE OR TRUNCATE ON catalog_catalogmodel
            FOR EACH STATEMENT EXECUTE FUNCTION catalog_count_change()""",
        f"""CREATE TRIGGER catalog_version_update AFTER UPDATE ON catalog_catalogmodel FOR EACH ROW
            WHEN ({_changed("IS DISTINCT FROM")})
            EXECUTE FUNCTION catalog_count_change()""",
    ],
    "drop": ["DROP TRIGGER IF EXISTS catalog_version ON catalog_catalogmodel",
             "DROP TRIGGER IF EXISTS catalog_version_update ON catalog_catalogmodel",
             "DROP FUNCTION IF EXISTS catalog_count_change()"],
}


def _run(step):
    def run(apps, schema_editor):
        statements = {"sqlite": SQLITE, "postgresql": POSTGRESQL}.get(schema_editor.connection.vendor)
        for statement in statements[step] if statements else ():
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_postgres_search_vector")]
    operations = [
        migrations.CreateModel(
            name="SearchVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(_run("create"), _run("drop")),
    ]
