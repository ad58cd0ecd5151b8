import Foundation
import Logging
import SQLiteNIO
import ServiceLifecycle
import Warren

/// One SQLite file (sqlite-nio: its calls run on NIO's thread pool, never on the cooperative pool). Writes take turns
/// on one connection, in `BEGIN IMMEDIATE` transactions; reads use another, so a reader never sees a transaction
/// before it commits (WAL).
final class SQLiteLedgerDatabase: LedgerDatabase {
    let path: String
    private let writer: SQLiteConnection
    private let reader: SQLiteConnection
    private let writes = AsyncMutex()

    /// Opens (creating when missing) the database at `path`.
    /// - Throws: SQLite's error when the file cannot be opened.
    init(path: String, logger: Logger) async throws {
        self.path = path
        writer = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        // WAL: readers (a dashboard) never block the writer; NORMAL: a commit is durable against a crash of the
        // process (not of the machine) without an fsync each; statement journals and the page cache in memory (a
        // big multi-row upsert otherwise writes its undo pages to a temporary file).
        for pragma in ["journal_mode = WAL", "synchronous = NORMAL", "temp_store = MEMORY", "cache_size = -65536"] {
            _ = try await writer.query("PRAGMA \(pragma)")
        }
        reader = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        _ = try await reader.query("PRAGMA cache_size = -65536")
    }

    static let dialect = LedgerDialect(
        placeholder: { "?\($0)" }, nextPlaceholder: "?", jsonPlaceholder: { "?\($0)" }, jsonText: { $0 },
        greatest: "MAX", least: "MIN",
        eventsOnceTarget: "(message_id, at_ms, event, COALESCE(attempt, 0))", rowsPerStatement: 400,
        schema: LedgerSchema(
            idColumn: "INTEGER PRIMARY KEY", integer: "INTEGER", json: "TEXT", boolean: "INTEGER",
            randomID: "lower(hex(randomblob(16)))"),
        migrationLock: nil, deletedRows: .changes)

    var dialect: LedgerDialect { Self.dialect }

    /// The schema versions, in order.
    static var migrations: [(version: Int, statements: [String])] { dialect.migrations }

    func read(_ sql: String, _ values: [JobSQL.Value]) async throws -> [LedgerRow] {
        try await Self.query(reader, sql, values)
    }

    func transaction<Result: Sendable>(_ body: @Sendable (any LedgerTransaction) async throws -> Result) async throws
        -> Result
    {
        try await writes.withLock {
            _ = try await writer.query("BEGIN IMMEDIATE")
            do {
                let result = try await body(Transaction(connection: writer))
                _ = try await writer.query("COMMIT")
                return result
            } catch {
                _ = try? await writer.query("ROLLBACK")
                throw error
            }
        }
    }

    func prepare() async throws {}

    /// Nothing runs beside SQLite's calls (they take NIO's thread pool): waits for the end, so that the store sits in a
    /// service group like any other service.
    func run() async throws {
        try? await gracefulShutdown()
    }

    func close() async throws {
        try await reader.close()
        try await writer.close()
    }

    private struct Transaction: LedgerTransaction {
        let connection: SQLiteConnection

        func query(_ sql: String, _ values: [JobSQL.Value]) async throws -> [LedgerRow] {
            try await SQLiteLedgerDatabase.query(connection, sql, values)
        }
    }

    private static func query(_ connection: SQLiteConnection, _ sql: String, _ values: [JobSQL.Value]) async throws
        -> [LedgerRow]
    {
        let binds = values.map { value -> SQLiteData in
            switch value {
            case .text(let text): .text(text)
            case .integer(let integer): .integer(SQLiteInt64(integer))
            case .boolean(let boolean): .integer(boolean ? 1 : 0)
            case .null: .null
            }
        }
        return try await connection.query(sql, binds).map { row in
            var columns: [String: JobSQL.Value] = [:]
            for column in row.columns {
                switch column.data {
                case .integer(let integer): columns[column.name] = .integer(Int64(integer))
                case .text(let text): columns[column.name] = .text(text)
                case .float(let float): columns[column.name] = .integer(Int64(exactly: float.rounded()) ?? 0)
                case .blob, .null: columns[column.name] = .null
                }
            }
            return LedgerRow(columns: columns)
        }
    }
}
