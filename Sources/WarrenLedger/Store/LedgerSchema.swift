/// The ledger's tables, version by version, written once: each database gives its types (``SQLiteLedgerDatabase``,
/// ``PostgresLedgerDatabase``). Each version runs once, in order, recorded in `ledger_migrations`; a version's text may
/// be reworded but never changed in effect, since databases migrated before keep what it made.
struct LedgerSchema {
    /// A table's own row id (`INTEGER PRIMARY KEY`, `BIGSERIAL PRIMARY KEY`).
    var idColumn: String
    /// Milliseconds and counts (`INTEGER`, `BIGINT`).
    var integer: String
    /// A dead letter's headers (`TEXT`, `JSONB`).
    var json: String
    /// `body_truncated` (`INTEGER`, `BOOLEAN`).
    var boolean: String
    /// A new random identity, as text.
    var randomID: String

    /// The versions, in order; `greatest` names the larger of two values (``LedgerDialect/greatest``).
    func migrations(greatest: String) -> [(version: Int, statements: [String])] {
        [
            (
                1,
                [
                    """
                    CREATE TABLE events (
                        id \(idColumn), message_id TEXT NOT NULL, event TEXT NOT NULL, type TEXT, queue TEXT NOT NULL,
                        attempt INTEGER, at_ms \(integer) NOT NULL, queue_wait_ms \(integer), duration_ms \(integer), error TEXT,
                        reason TEXT, next_attempt_at_ms \(integer), host TEXT, trace_id TEXT)
                    """,
                    "CREATE INDEX events_by_job ON events (message_id, at_ms)",
                    """
                    CREATE TABLE jobs (
                        message_id TEXT PRIMARY KEY, type TEXT, queue TEXT NOT NULL, status TEXT NOT NULL,
                        attempts INTEGER NOT NULL DEFAULT 0, published_at_ms \(integer), updated_at_ms \(integer) NOT NULL,
                        updated_phase INTEGER NOT NULL DEFAULT 0, next_attempt_at_ms \(integer), reason TEXT, last_error TEXT,
                        trace_id TEXT)
                    """,
                    "CREATE INDEX jobs_by_type_status ON jobs (type, status, updated_at_ms)",
                    "CREATE INDEX jobs_by_queue_status ON jobs (queue, status, updated_at_ms)",
                    """
                    CREATE TABLE dead_letters (
                        message_id TEXT NOT NULL, at_ms \(integer) NOT NULL, queue TEXT NOT NULL, type TEXT, reason TEXT, error TEXT,
                        headers \(json), body TEXT, body_encoding TEXT, body_truncated \(boolean), PRIMARY KEY (message_id, at_ms))
                    """,
                ]
            ),
            // Searches and retention go by the time of a job's latest event, `published` included.
            (
                2,
                [
                    "ALTER TABLE jobs ADD COLUMN last_event_at_ms \(integer) NOT NULL DEFAULT 0",
                    "UPDATE jobs SET last_event_at_ms = \(greatest)(updated_at_ms, COALESCE(published_at_ms, 0))",
                ] + JobSQL.version2
            ),
            (3, JobSQL.version3),
            (4, JobSQL.version4(idColumn: idColumn, integer: integer)),
            (5, DeadLetterSQL.version5(integer: integer)),
            // The store's identity, which its ledgers' queue carries (``Ledger``): one queue per store.
            (
                6,
                [
                    "CREATE TABLE ledger_identity (id TEXT PRIMARY KEY)",
                    "INSERT INTO ledger_identity (id) VALUES (\(randomID))",
                ]
            ),
            (7, JobSQL.version7),
            (8, JobSQL.version8(integer: integer)),
            // The message ids handled per scope, shared by every worker on the store (``LedgerIdempotencyStore``).
            (
                9,
                [
                    """
                    CREATE TABLE idempotency_keys (
                        scope TEXT NOT NULL, message_id TEXT NOT NULL, recorded_at_ms \(integer) NOT NULL,
                        PRIMARY KEY (scope, message_id))
                    """,
                    "CREATE INDEX idempotency_keys_by_time ON idempotency_keys (recorded_at_ms)",
                ]
            ),
        ]
    }
}
