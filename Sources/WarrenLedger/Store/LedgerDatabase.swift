import Foundation

/// A SQL database as the ledger's store uses it: statements with numbered parameters, rows read by column name, writes
/// in transactions that take turns. ``SQLLedgerStore`` writes the ledger's logic and SQL once over it; SQLite and
/// PostgreSQL differ only in what ``LedgerDialect`` says and in how each adapter talks to its driver.
protocol LedgerDatabase: Sendable {
    var dialect: LedgerDialect { get }
    /// Runs a read outside any transaction; it never sees a transaction before that commits.
    func read(_ sql: String, _ values: [JobSQL.Value]) async throws -> [LedgerRow]
    /// Runs `body` in one transaction, after the writes before it (one writer at a time where the database needs it):
    /// committed when `body` returns, rolled back when it throws.
    func transaction<Result: Sendable>(_ body: @Sendable (any LedgerTransaction) async throws -> Result) async throws
        -> Result
    /// Before the first migration: what the adapter checks of its server (a PostgreSQL server's TLS and login).
    func prepare() async throws
    /// Runs what the database needs while it is in use (PostgreSQL's connection pool) until the task is cancelled or
    /// its service group shuts down gracefully.
    func run() async throws
    func close() async throws
}

extension LedgerDatabase {
    /// One statement in a transaction of its own.
    @discardableResult
    func write(_ sql: String, _ values: [JobSQL.Value]) async throws -> [LedgerRow] {
        try await transaction { try await $0.query(sql, values) }
    }
}

/// The statements of one transaction (``LedgerDatabase/transaction(_:)``).
protocol LedgerTransaction: Sendable {
    @discardableResult
    func query(_ sql: String, _ values: [JobSQL.Value]) async throws -> [LedgerRow]
}

/// One row of a result, its columns by name (as the `SELECT` named or aliased them).
struct LedgerRow: Sendable {
    var columns: [String: JobSQL.Value]

    func text(_ column: String) -> String? {
        if case .text(let text) = columns[column] { return text }
        return nil
    }

    func integer(_ column: String) -> Int64? {
        switch columns[column] {
        case .integer(let integer): integer
        case .boolean(let boolean): boolean ? 1 : 0
        default: nil
        }
    }

    func boolean(_ column: String) -> Bool? {
        switch columns[column] {
        case .boolean(let boolean): boolean
        case .integer(let integer): integer != 0
        default: nil
        }
    }
}

/// What differs between the databases in the SQL the ledger writes.
struct LedgerDialect: Sendable {
    /// The `n`-th parameter (from 1): `?n` (SQLite), `$n` (PostgreSQL).
    let placeholder: @Sendable (Int) -> String
    /// A parameter taken in order, where the database has one (SQLite's `?`): many rows of them cost one row's text,
    /// repeated, rather than a number for each value. Only for a database whose JSON columns take text as it is.
    let nextPlaceholder: String?
    /// The `n`-th parameter bound as text into a JSON column: PostgreSQL's JSONB wants a cast.
    let jsonPlaceholder: @Sendable (Int) -> String
    /// A JSON column read as text.
    let jsonText: @Sendable (String) -> String
    /// The larger and the smaller of two values: `MAX`/`MIN` (SQLite's scalar forms), `GREATEST`/`LEAST`.
    let greatest: String
    let least: String
    /// The target of the `events_once` index, written as each database matches it.
    let eventsOnceTarget: String
    /// Rows per multi-row statement, below the database's limit on parameters (SQLite 32,766; PostgreSQL 65,535).
    let rowsPerStatement: Int
    /// The tables in this database's types.
    let schema: LedgerSchema
    /// Taken first in the migrating transaction, so that two processes starting at once do not both migrate.
    let migrationLock: String?
    /// How a transaction learns how many rows a `DELETE` removed, counted by the server.
    let deletedRows: DeletedRows

    enum DeletedRows: Sendable {
        /// `SELECT changes()` after the statement (SQLite).
        case changes
        /// `WITH gone AS (DELETE … RETURNING 1) SELECT COUNT(*)` (PostgreSQL).
        case returningInCTE
    }

    /// Schema versions, in order; each runs once (recorded in `ledger_migrations`).
    var migrations: [(version: Int, statements: [String])] { schema.migrations(greatest: greatest) }

    /// `(p, p, …), (…)`: `rows` rows of `columns` parameters, numbered from 1 in order; the columns of `json` (from 1)
    /// take ``jsonPlaceholder``.
    func rows(_ rows: Int, columns: Int, json: Set<Int> = []) -> String {
        if let next = nextPlaceholder {
            let row = "(" + Array(repeating: next, count: columns).joined(separator: ",") + ")"
            return Array(repeating: row, count: rows).joined(separator: ",")
        }
        return (0..<rows).map { row in
            "("
                + (1...columns).map { column in
                    let n = row * columns + column
                    return json.contains(column) ? jsonPlaceholder(n) : placeholder(n)
                }.joined(separator: ",") + ")"
        }.joined(separator: ",")
    }

    /// `(p, p, …)`: a list of `count` parameters, numbered from `first`.
    func list(_ count: Int, from first: Int = 1) -> String {
        "(" + (first..<first + count).map(placeholder).joined(separator: ",") + ")"
    }
}
