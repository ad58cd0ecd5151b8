import Foundation
import Testing
import WarrenLedger

/// The stores every ledger test runs against.
package enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    package var testDescription: String { rawValue }
}

/// A fresh store of `kind`: a SQLite file of its own, or a new database on the test process's PostgreSQL.
package func withStore<T>(_ kind: StoreKind, _ body: (SQLLedgerStore) async throws -> T) async throws -> T {
    switch kind {
    case .sqlite:
        return try await withSQLiteStore { store, _ in try await body(store) }
    case .postgres:
        let url = try await LocalPostgres.shared().newDatabaseURL()
        let store = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
        return try await store.withRunning { try await body(store) }
    }
}

/// A store in a file of its own, removed afterwards.
package func withSQLiteStore<T>(_ body: (SQLiteLedgerStore, String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString).sqlite").path
    defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
    let store = try await SQLiteLedgerStore(path: path)
    do {
        let result = try await body(store, path)
        try? await store.close()
        return result
    } catch {
        try? await store.close()
        throw error
    }
}

/// Runs `stores` (``LedgerStore/withRunning(_:)``) while `body` runs.
package func withRunning<T>(_ stores: [any LedgerStore], _ body: () async throws -> T) async throws -> T {
    try await whileRunning(stores.map { store in { try await store.run() } }, body)
}
