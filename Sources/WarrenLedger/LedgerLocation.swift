import Foundation
import Logging
import Warren

/// Where a ledger's store is, as a host's command line names it: `sqlite:PATH` (a file, created when missing) or a
/// PostgreSQL URL (`postgres://user:password@host:5432/database`).
public struct LedgerLocation: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case sqlite(path: String)
        case postgres(url: String)
    }

    public let kind: Kind

    /// - Throws: ``WarrenError`` with ``WarrenError/Code/invalidConfiguration`` for anything else.
    public init(_ text: String) throws {
        if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            guard !path.isEmpty else {
                throw WarrenError(.invalidConfiguration, "sqlite: needs a path (sqlite:/var/lib/warren/ledger.sqlite)")
            }
            kind = .sqlite(path: path)
        } else if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            kind = .postgres(url: text)
        } else {
            throw WarrenError(
                .invalidConfiguration, "a ledger store is sqlite:PATH or postgres://user:password@host:port/database")
        }
    }

    /// Opens the store (not yet migrated: a ``Ledger`` migrates when it runs; call ``LedgerStore/migrate()`` to
    /// serve one without ingesting). Run it in the service group, or use ``LedgerStore/withRunning(_:)``: a PostgreSQL
    /// store's queries wait until it runs.
    /// - Throws: SQLite's error for a file that cannot be opened; ``WarrenError`` for a URL that does not parse.
    public func open(logger: Logger = Logger(label: "warren.ledger")) async throws -> SQLLedgerStore {
        switch kind {
        case .sqlite(let path):
            return try await SQLiteLedgerStore(path: path, logger: logger)
        case .postgres(let url):
            #if PostgreSQL
                return try PostgresLedgerStore(url: url, logger: logger)
            #else
                _ = url
                throw WarrenError(
                    .invalidConfiguration, "this build of Warren has no PostgreSQL store: its PostgreSQL trait is off")
            #endif
        }
    }

    /// The location with any password replaced by `***`: what logs show.
    public var description: String {
        switch kind {
        case .sqlite(let path): return "sqlite:\(path)"
        case .postgres(let url):
            guard var components = URLComponents(string: url), components.password != nil else {
                return url.contains("@") ? "postgres://***" : url
            }
            components.password = "***"
            return components.string ?? "postgres://***"
        }
    }
}
