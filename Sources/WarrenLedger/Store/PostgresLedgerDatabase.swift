// Built with the PostgreSQL trait (on by default): without it, WarrenLedger needs neither postgres-nio nor swift-nio-ssl.
#if PostgreSQL
    import Foundation
    import Logging
    import PostgresNIO
    import Synchronization
    import Warren

    /// A PostgreSQL database (postgres-nio's pooled client), for several ledgers and dashboards and long retention. Each
    /// transaction takes a connection of the pool; ledgers on one database each commit their own, and the schema is
    /// migrated under an advisory lock, so two starting at once do not race.
    final class PostgresLedgerDatabase: LedgerDatabase {
        private let client: PostgresClient
        /// Whether the client's pool runs: it runs inside ``run()``, in the task of whoever runs the store (its service
        /// group, or ``LedgerStore/withRunning(_:)``); queries wait for it and fail once it ended.
        private let life = AwaitableState(Life.notRunning)
        private let logger: Logger

        static let dialect = LedgerDialect(
            placeholder: { "$\($0)" }, nextPlaceholder: nil, jsonPlaceholder: { "$\($0)::jsonb" },
            jsonText: { "\($0)::text AS \($0)" },
            greatest: "GREATEST", least: "LEAST",
            eventsOnceTarget: "(message_id, at_ms, event, (COALESCE(attempt, 0)))",
            rowsPerStatement: 1_000,
            schema: LedgerSchema(
                idColumn: "BIGSERIAL PRIMARY KEY", integer: "BIGINT", json: "JSONB", boolean: "BOOLEAN",
                randomID: "md5(random()::text || clock_timestamp()::text)"),
            migrationLock: "SELECT pg_advisory_xact_lock(7715201)",
            deletedRows: .returningInCTE)

        var dialect: LedgerDialect { Self.dialect }

        /// The schema versions, in order.
        static var migrations: [(version: Int, statements: [String])] { dialect.migrations }

        /// Where the store connects, when it was made from a URL: checked once, with a connection of its own, before the
        /// first migration, so that a refused TLS handshake or login is a clear error at start.
        struct Server: Sendable {
            var host: String
            var port: Int
            var username: String
            var password: String?
            var database: String?
            var tls: PostgresTLSMode
        }

        private let serverCheck: Mutex<(server: Server?, checked: Bool)>

        enum Life: Sendable, Equatable {
            case notRunning, running, ended
        }

        /// How long a query waits for a store that does not run before it says so in the log.
        private let notRunningWarningAfter: Duration

        /// The client's connection pool, not yet running: ``run()`` runs it.
        init(
            configuration: PostgresClient.Configuration, server: Server?, logger: Logger,
            notRunningWarningAfter: Duration = .seconds(10)
        ) {
            client = PostgresClient(configuration: configuration, backgroundLogger: logger)
            self.logger = logger
            self.notRunningWarningAfter = notRunningWarningAfter
            serverCheck = Mutex((server, false))
        }

        /// Runs the client's connection pool until the task is cancelled or its service group shuts down gracefully
        /// (postgres-nio's client stops on either); the store's queries fail from then on.
        /// - Throws: ``LedgerStoreError`` with ``LedgerStoreError/Code/notRunning`` when the store runs already or ran.
        func run() async throws {
            let starts = life.update { life -> Bool in
                guard life == .notRunning else { return false }
                life = .running
                return true
            }
            guard starts else {
                throw LedgerStoreError(.notRunning, "the PostgreSQL ledger store runs once: it runs already, or ran")
            }
            defer { life.update { $0 = .ended } }
            await client.run()
        }

        /// Returns once the pool runs: at once while it does. A store used before it runs waits, with one warning
        /// after 10 s that says why (a service group starts its services in no set order, so a moment is normal).
        /// - Throws: ``LedgerStoreError`` with ``LedgerStoreError/Code/notRunning`` once the store stopped;
        ///   `CancellationError`.
        private func whenRunning() async throws {
            if life.value == .notRunning {
                let isStarted: @Sendable (Life) -> Bool = { $0 != .notRunning }
                if await !life.wait(until: isStarted, timeout: notRunningWarningAfter) {
                    try Task.checkCancellation()
                    logger.warning(
                        "the PostgreSQL ledger store is used but does not run: its queries wait until it does (run it in the service group, listed first, or call withRunning)"
                    )
                    try await life.wait(until: isStarted)
                }
            }
            if life.value == .ended {
                throw LedgerStoreError(.notRunning, "the PostgreSQL ledger store stopped: its connections are closed")
            }
        }

        /// The server a URL names: `postgres://user:password@host:port/database?sslmode=…&sslrootcert=…`.
        /// - Throws: ``WarrenError`` with ``WarrenError/Code/invalidConfiguration`` for a URL that does not parse;
        ///   ``LedgerStoreError`` for an unknown `sslmode` or parameter.
        static func server(url: String) throws -> Server {
            guard let components = URLComponents(string: url),
                ["postgres", "postgresql"].contains(components.scheme ?? ""),
                let host = components.host, let user = components.user
            else {
                throw WarrenError(
                    .invalidConfiguration, "not a PostgreSQL URL (postgres://user:password@host:port/database)")
            }
            let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            return Server(
                host: host, port: components.port ?? 5432, username: user, password: components.password,
                database: database.isEmpty ? nil : database,
                tls: try PostgresTLSMode(query: components.queryItems ?? []))
        }

        /// Connects once on its own (not through the pool, which retries quietly): its error is the server's or the TLS
        /// handshake's, said plainly; warns when the connection to a host other than this machine is not encrypted.
        func prepare() async throws {
            guard
                let server = serverCheck.withLock({ state -> Server? in
                    defer { state.checked = true }
                    return state.checked ? nil : state.server
                })
            else { return }
            let place = "PostgreSQL at \(server.host):\(server.port) (sslmode=\(server.tls.mode.rawValue))"
            let connection: PostgresConnection
            do {
                connection = try await PostgresConnection.connect(
                    configuration: PostgresConnection.Configuration(
                        host: server.host, port: server.port, username: server.username, password: server.password,
                        database: server.database,
                        tls: try server.tls.connection()),
                    id: 0, logger: logger)
            } catch {
                serverCheck.withLock { $0.checked = false }
                throw LedgerStoreError(.cannotConnect, "cannot connect to \(place): \(Self.explain(error))")
            }
            var encrypted = false
            do {
                for try await ssl in try await connection.query(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: logger
                )
                .decode(Bool.self) {
                    encrypted = ssl
                }
            } catch {
                logger.debug(
                    "could not ask PostgreSQL whether the connection is encrypted",
                    metadata: ["error": "\(String(reflecting: error))"])
            }
            try? await connection.close()
            if Self.warnsInClear(encrypted: encrypted, host: server.host) {
                logger.warning(
                    "the connection to PostgreSQL is not encrypted: queries, results and dead letters cross the network in clear (use sslmode=verify-full)",
                    metadata: ["host": "\(server.host)", "sslmode": "\(server.tls.mode.rawValue)"])
            }
        }

        /// Whether a connection deserves a warning: not encrypted, to a host other than this machine.
        static func warnsInClear(encrypted: Bool, host: String) -> Bool {
            !encrypted && !isLoopbackHost(host)
        }

        /// What went wrong connecting, in words (PSQLError's own description says nothing, to keep queries out of logs).
        static func explain(_ error: any Error) -> String {
            guard let error = error as? PSQLError else { return "\(error)" }
            if let message = error.serverInfo?[.message] { return "the server said: \(message)" }
            switch error.code {
            case .sslUnsupported: return "the server does not offer TLS, and the sslmode requires it"
            default:
                if let underlying = error.underlying { return "\(underlying)" }
                return "\(error.code)"
            }
        }

        func read(_ sql: String, _ values: [JobSQL.Value]) async throws -> [LedgerRow] {
            try await whenRunning()
            return try await Self.rows(
                try await client.query(PostgresQuery(unsafeSQL: sql, binds: Self.bindings(values)), logger: logger))
        }

        func transaction<Result: Sendable>(_ body: @Sendable (any LedgerTransaction) async throws -> Result)
            async throws -> Result
        {
            try await whenRunning()
            return try await client.withTransaction(logger: logger) { connection in
                try await body(Transaction(connection: connection, logger: logger))
            }
        }

        /// Nothing to release beyond what ``run()`` stops: the pool's connections close when it returns.
        func close() async throws {}

        private struct Transaction: LedgerTransaction {
            let connection: PostgresConnection
            let logger: Logger

            func query(_ sql: String, _ values: [JobSQL.Value]) async throws -> [LedgerRow] {
                try await PostgresLedgerDatabase.rows(
                    try await connection.query(
                        PostgresQuery(unsafeSQL: sql, binds: PostgresLedgerDatabase.bindings(values)), logger: logger))
            }
        }

        private static func bindings(_ values: [JobSQL.Value]) -> PostgresBindings {
            var binds = PostgresBindings(capacity: values.count)
            for value in values {
                switch value {
                case .text(let text): binds.append(text)
                case .integer(let integer): binds.append(integer)
                case .boolean(let boolean): binds.append(boolean)
                case .null: binds.appendNull()
                }
            }
            return binds
        }

        /// Every row of `sequence`, each cell as a ``JobSQL/Value`` by its type: integers, booleans, and text for the rest
        /// (the ledger's columns are text, integers and booleans; JSON is read as text).
        private static func rows(_ sequence: PostgresRowSequence) async throws -> [LedgerRow] {
            var rows: [LedgerRow] = []
            for try await row in sequence {
                var columns: [String: JobSQL.Value] = [:]
                for cell in row {
                    guard cell.bytes != nil else {
                        columns[cell.columnName] = .null
                        continue
                    }
                    switch cell.dataType {
                    case .int2, .int4, .int8:
                        columns[cell.columnName] = .integer(try cell.decode(Int64.self, context: .default))
                    case .bool: columns[cell.columnName] = .boolean(try cell.decode(Bool.self, context: .default))
                    default: columns[cell.columnName] = .text(try cell.decode(String.self, context: .default))
                    }
                }
                rows.append(LedgerRow(columns: columns))
            }
            return rows
        }
    }
#endif
