//! Roles: the platform's reader and writer hold the privileges they should, and no more.

use hoist_core::check::Check;
use hoist_core::sql::TableName;
use sqlx::PgPool;

/// Roles: the reader can read `table` and cannot write it; the writer can write it. Nothing is
/// written: `INSERT ... SELECT ... WHERE false` is checked for privileges like any insert.
pub async fn roles(
    writer: (&str, &PgPool),
    reader: (&str, &PgPool),
    table: &TableName,
) -> Vec<Check> {
    let read = format!("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1) AS one");
    let write = format!("INSERT INTO {table} SELECT * FROM {table} WHERE false");
    let outcome = async |pool: &PgPool, sql: &str| -> Result<(), sqlx::Error> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|_| ())
    };
    let describe = |r: &Result<(), sqlx::Error>| match r {
        Ok(()) => "allowed".to_owned(),
        Err(sqlx::Error::Database(d)) => {
            format!(
                "refused: {} ({})",
                d.message(),
                d.code().unwrap_or_default()
            )
        }
        Err(e) => format!("refused: {e}"),
    };
    let mut out = Vec::new();
    let r = outcome(reader.1, &read).await;
    out.push(Check::new(
        "roles.reader_can_read",
        reader.0,
        r.is_ok(),
        describe(&r),
        "allowed",
    ));
    let r = outcome(reader.1, &write).await;
    let denied = r
        .as_ref()
        .err()
        .and_then(|e| e.as_database_error())
        .and_then(|d| d.code())
        // insufficient_privilege, or read_only_sql_transaction on a standby.
        .is_some_and(|code| code == "42501" || code == "25006");
    out.push(Check::new(
        "roles.reader_cannot_write",
        reader.0,
        denied,
        describe(&r),
        "refused (42501)",
    ));
    let r = outcome(writer.1, &write).await;
    out.push(Check::new(
        "roles.writer_can_write",
        writer.0,
        r.is_ok(),
        describe(&r),
        "allowed",
    ));
    out
}
