import Foundation
import Logging
import PostgresNIO
import Synchronization
import Warren

/// The shared store: PostgreSQL (postgres-nio's pooled client), for several ledgers and dashboards and long
/// retention. Ledgers on one database share the work: each commits its batches in its own transactions, and the
/// schema is migrated under an advisory lock, so two starting at once do not race.
public final class PostgresLedgerStore: LedgerStore {
    private let client: PostgresClient
    private let running: Task<Void, Never>
    private let logger: Logger
    private let bounds: LedgerBoundsReport

    /// The schema versions, in order (see ``SQLiteLedgerStore/migrations`` for the same tables in SQLite).
    static let migrations: [(version: Int, statements: [String])] = [
        (1, [
            """
            CREATE TABLE events (
                id BIGSERIAL PRIMARY KEY, message_id TEXT NOT NULL, event TEXT NOT NULL, type TEXT, queue TEXT NOT NULL,
                attempt INTEGER, at_ms BIGINT NOT NULL, queue_wait_ms BIGINT, duration_ms BIGINT, error TEXT, reason TEXT,
                next_attempt_at_ms BIGINT, host TEXT, trace_id TEXT)
            """,
            "CREATE INDEX events_by_job ON events (message_id, at_ms)",
            """
            CREATE TABLE jobs (
                message_id TEXT PRIMARY KEY, type TEXT, queue TEXT NOT NULL, status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, published_at_ms BIGINT, updated_at_ms BIGINT NOT NULL,
                updated_phase INTEGER NOT NULL DEFAULT 0, next_attempt_at_ms BIGINT, reason TEXT, last_error TEXT,
                trace_id TEXT)
            """,
            "CREATE INDEX jobs_by_type_status ON jobs (type, status, updated_at_ms)",
            "CREATE INDEX jobs_by_queue_status ON jobs (queue, status, updated_at_ms)",
            """
            CREATE TABLE dead_letters (
                message_id TEXT NOT NULL, at_ms BIGINT NOT NULL, queue TEXT NOT NULL, type TEXT, reason TEXT, error TEXT,
                headers JSONB, body TEXT, body_encoding TEXT, body_truncated BOOLEAN, PRIMARY KEY (message_id, at_ms))
            """,
        ]),
        (2, [
            "ALTER TABLE jobs ADD COLUMN last_event_at_ms BIGINT NOT NULL DEFAULT 0",
            "UPDATE jobs SET last_event_at_ms = GREATEST(updated_at_ms, COALESCE(published_at_ms, 0))",
        ] + JobSQL.version2),
        (3, JobSQL.version3),
        (4, JobSQL.version4(idColumn: "BIGSERIAL PRIMARY KEY", integer: "BIGINT")),
        (5, DeadLetterSQL.version5(integer: "BIGINT")),
        (6, ["CREATE TABLE ledger_identity (id TEXT PRIMARY KEY)", "INSERT INTO ledger_identity (id) VALUES (md5(random()::text || clock_timestamp()::text))"]),
        (7, JobSQL.version7),
    ]

    /// - Parameter url: `postgres://user:password@host:port/database?sslmode=…&sslrootcert=…` (the password stays out of
    ///   every log and error). `sslmode` and `sslrootcert` have libpq's meanings (``PostgresTLSMode``); without them
    ///   TLS is used when the server offers it, its certificate unchecked (`prefer`).
    /// - Throws: ``WarrenError`` with ``WarrenError/Code/invalidConfiguration`` for a URL that does not parse;
    ///   ``LedgerStoreError`` for an unknown `sslmode` or parameter, or an `sslrootcert` that cannot be read.
    public convenience init(url: String, logger: Logger = Logger(label: "warren.ledger.postgres")) throws {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, let user = components.user
        else {
            throw WarrenError(.invalidConfiguration, "not a PostgreSQL URL (postgres://user:password@host:port/database)")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let tls = try PostgresTLSMode(query: components.queryItems ?? [])
        let server = Server(
            host: host, port: components.port ?? 5432, username: user, password: components.password,
            database: database.isEmpty ? nil : database, tls: tls)
        do {
            self.init(
                configuration: PostgresClient.Configuration(
                    host: server.host, port: server.port, username: user, password: server.password, database: server.database,
                    tls: try tls.client()),
                logger: logger)
        } catch let error as LedgerStoreError {
            throw error
        } catch {
            throw LedgerStoreError(.invalidURL, "sslrootcert: \(error)")
        }
        self.server = server
    }

    /// Where the store connects, when it was made from a URL: checked once, with a connection of its own, before the
    /// first migration (``migrate()``), so that a refused TLS handshake or login is a clear error at start.
    struct Server: Sendable {
        var host: String
        var port: Int
        var username: String
        var password: String?
        var database: String?
        var tls: PostgresTLSMode
    }

    private var server: Server? {
        get { serverCheck.withLock { $0.server } }
        set { serverCheck.withLock { $0.server = newValue } }
    }

    private let serverCheck = Mutex<(server: Server?, checked: Bool)>((nil, false))

    /// Starts the client's connection pool; ``close()`` stops it.
    public init(configuration: PostgresClient.Configuration, logger: Logger = Logger(label: "warren.ledger.postgres")) {
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        bounds = LedgerBoundsReport(logger: logger)
        running = Task { await client.run() }
    }

    /// Connects once on its own (not through the pool, which retries quietly): its error is the server's or the TLS
    /// handshake's, said plainly; warns when the connection to a host other than this machine is not encrypted.
    private func checkServer() async throws {
        guard let server = serverCheck.withLock({ state -> Server? in
            defer { state.checked = true }
            return state.checked ? nil : state.server
        }) else { return }
        let place = "PostgreSQL at \(server.host):\(server.port) (sslmode=\(server.tls.mode.rawValue))"
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                configuration: PostgresConnection.Configuration(
                    host: server.host, port: server.port, username: server.username, password: server.password, database: server.database,
                    tls: try server.tls.connection()),
                id: 0, logger: logger)
        } catch {
            serverCheck.withLock { $0.checked = false }
            throw LedgerStoreError(.cannotConnect, "cannot connect to \(place): \(Self.explain(error))")
        }
        var encrypted = false
        do {
            for try await ssl in try await connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: logger)
                .decode(Bool.self)
            {
                encrypted = ssl
            }
        } catch {
            logger.debug("could not ask PostgreSQL whether the connection is encrypted", metadata: ["error": "\(String(reflecting: error))"])
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

    public func migrate() async throws {
        try await checkServer()
        try await client.withTransaction(logger: logger) { connection in
            // One migrating process at a time; the others find the work done.
            try await connection.query("SELECT pg_advisory_xact_lock(7715201)", logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS ledger_migrations (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
                logger: logger)
            var applied: Set<Int> = []
            for try await version in try await connection.query("SELECT version FROM ledger_migrations", logger: logger).decode(Int.self) {
                applied.insert(version)
            }
            for migration in Self.migrations where !applied.contains(migration.version) {
                for statement in migration.statements { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                try await connection.query(
                    "INSERT INTO ledger_migrations (version, applied_at_ms) VALUES (\(migration.version), \(now))", logger: logger)
            }
            // Dead letters recorded before version 3 get their failure group.
            while true {
                var rows: [(String, Int64, String?, String?, String?)] = []
                for try await row in try await connection.query(
                    PostgresQuery(unsafeSQL: "SELECT message_id, at_ms, type, reason, error FROM dead_letters WHERE group_id IS NULL LIMIT \(JobSQL.backfillBatch)"),
                    logger: logger
                ).decode((String, Int64, String?, String?, String?).self) { rows.append(row) }
                guard !rows.isEmpty else { break }
                for (id, at, type, reason, error) in rows {
                    let failure = FailureFingerprint(type: type, reason: reason, error: error)
                    try await connection.query(
                        "UPDATE dead_letters SET group_id = \(failure.groupID), fingerprint = \(failure.maskedError) WHERE message_id = \(id) AND at_ms = \(at)",
                        logger: logger)
                }
            }
        }
    }

    public func identity() async throws -> String {
        guard let id = try await strings("SELECT id FROM ledger_identity").first else {
            throw LedgerStoreError(.invalidURL, "the store has no identity: migrate it first")
        }
        return id
    }

    public func schemaVersion() async throws -> Int {
        for try await version in try await client.query("SELECT MAX(version) FROM ledger_migrations", logger: logger).decode(Int?.self) {
            return version ?? 0
        }
        return 0
    }

    /// Rows per statement: PostgreSQL takes at most 65,535 parameters.
    private static let rowsPerStatement = 1_000

    public func record(_ events: [WarrenEvent]) async throws {
        let events = events.filter { $0.messageID != nil }
        guard !events.isEmpty else { return }
        try await client.withTransaction(logger: logger) { connection in
            try await recordNow(events, on: connection, withDeadLetterRecords: true)
        }
    }

    /// Records `events` in `connection`'s transaction; `withDeadLetterRecords`: a `dead-letter` event writes its dead
    /// letter's record too, unless one exists (``JobSQL/deadLetterRecordKept``: a taken dead letter's record shows its copy).
    private func recordNow(_ events: [WarrenEvent], on connection: PostgresConnection, withDeadLetterRecords: Bool) async throws {
        let events = bounds.bounded(events.filter { $0.messageID != nil })
        for start in stride(from: 0, to: events.count, by: Self.rowsPerStatement) {
            let slice = events[start..<min(start + Self.rowsPerStatement, events.count)]
            let (kept, skipped) = LedgerBounds.withinJobBounds(
                slice, recordedEvents: try await recordedCounts("events", of: slice, on: connection),
                recordedDeadLetters: try await recordedCounts("dead_letters", of: slice.filter { $0.event == .deadLetter }, on: connection))
            bounds.report(skipped)
            guard !kept.isEmpty else { continue }
            let chunk = kept[...]
            try await connection.query(try Self.insertEvents(JobSQL.distinctEvents(chunk)[...]), logger: logger)
            try await connection.query(try Self.upsertJobs(JobUpdate.fold(chunk)), logger: logger)
            let letters = chunk.filter { $0.event == .deadLetter }
            if withDeadLetterRecords, !letters.isEmpty { try await connection.query(try Self.insertDeadLetters(letters), logger: logger) }
        }
    }

    /// How many rows of `table` (events, dead_letters) each job of `events` has.
    private func recordedCounts(_ table: String, of events: some Collection<WarrenEvent>, on connection: PostgresConnection) async throws -> [String: Int] {
        let ids = Array(Set(events.compactMap(\.messageID)))
        guard !ids.isEmpty else { return [:] }
        var binds = PostgresBindings()
        binds.append(ids)
        var counts: [String: Int] = [:]
        for try await (id, count) in try await connection.query(
            PostgresQuery(unsafeSQL: "SELECT message_id, COUNT(*) FROM \(table) WHERE message_id = ANY($1) GROUP BY message_id", binds: binds),
            logger: logger
        ).decode((String, Int).self) {
            counts[id] = count
        }
        return counts
    }

    private func rows(_ sql: String, _ values: [JobSQL.Value], on connection: PostgresConnection) async throws -> PostgresRowSequence {
        try await connection.query(PostgresQuery(unsafeSQL: sql, binds: Self.bindings(values)), logger: logger)
    }

    public func take(_ letters: [IngestedDeadLetter]) async throws {
        guard !letters.isEmpty else { return }
        let letters = letters.filter { !$0.messageID.isEmpty }.map(bounds.bounded(_:))
        try await client.withTransaction(logger: logger) { connection in
            var letters = letters
            if letters.contains(where: \.keyedByReceipt) {
                var kept: [IngestedDeadLetter] = []
                for letter in letters {
                    if letter.keyedByReceipt {
                        let rows = try await connection.query(
                            PostgresQuery(
                                unsafeSQL: DeadLetterSQL.heldAlready { "$\($0)" },
                                binds: Self.bindings([.text(letter.messageID), .text(letter.message.base64Body)])), logger: logger)
                        var found = false
                        for try await _ in rows { found = true }
                        if found { continue }
                    }
                    kept.append(letter)
                }
                letters = kept
            }
            // The records with their messages; the events and the jobs' rows after them.
            for start in stride(from: 0, to: letters.count, by: Self.rowsPerStatement) {
                let chunk = letters[start..<min(start + Self.rowsPerStatement, letters.count)]
                try await connection.query(
                    try Self.insertDeadLetters(chunk.map(\.event), held: chunk.map(\.message)), logger: logger)
            }
            try await recordNow(letters.map(\.event), on: connection, withDeadLetterRecords: false)
        }
    }

    public func heldDeadLetters(matching filter: DeadLetterFilter, after cursor: LedgerCursor?, limit: Int) async throws -> [HeldDeadLetter] {
        let (sql, values) = DeadLetterSQL.held(filter, after: cursor, limit: limit) { "$\($0)" }
        var letters: [HeldDeadLetter] = []
        for try await (id, at, queue, properties, body) in try await client.query(
            PostgresQuery(unsafeSQL: sql, binds: Self.bindings(values)), logger: logger
        ).decode((String, Int64, String, String?, String?).self) {
            letters.append(HeldDeadLetter(
                messageID: id, atMs: at, queue: queue,
                message: try StoredMessage(encodedProperties: properties ?? "", base64Body: body ?? "")))
        }
        return letters
    }

    public func countHeldDeadLetters(matching filter: DeadLetterFilter) async throws -> Int {
        let (sql, values) = DeadLetterSQL.countHeld(filter) { "$\($0)" }
        for try await n in try await client.query(PostgresQuery(unsafeSQL: sql, binds: Self.bindings(values)), logger: logger).decode(Int.self) {
            return n
        }
        return 0
    }

    public func createOperation(_ operation: DeadLetterOperation) async throws {
        try await client.query(
            PostgresQuery(unsafeSQL: DeadLetterSQL.insertOperation { "$\($0)" }, binds: Self.bindings(try DeadLetterSQL.operationValues(operation))),
            logger: logger)
    }

    public func operation(id: String) async throws -> DeadLetterOperation? {
        try await operations(DeadLetterSQL.operations(byID: true) { "$\($0)" }, [.text(id)]).first
    }

    public func operations(limit: Int) async throws -> [DeadLetterOperation] {
        try await operations(DeadLetterSQL.operations(byID: false) { "$\($0)" }, [.integer(Int64(min(max(limit, 1), 500)))])
    }

    private func operations(_ sql: String, _ values: [JobSQL.Value]) async throws -> [DeadLetterOperation] {
        var operations: [DeadLetterOperation] = []
        for try await row in try await client.query(PostgresQuery(unsafeSQL: sql, binds: Self.bindings(values)), logger: logger) {
            let (id, action, filter, actor, role, created, status, total, settled, cursorAt, cursorID, updated, error) = try row.decode(
                (String, String, String, String, String, Int64, String, Int64, Int64, Int64?, String?, Int64, String?).self)
            operations.append(DeadLetterSQL.operation(
                id: id, action: action, filter: filter, actor: actor, role: role, createdAtMs: created, status: status, total: total,
                settled: settled, cursorAtMs: cursorAt, cursorMessageID: cursorID, updatedAtMs: updated, error: error))
        }
        return operations
    }

    public func unfinishedOperations() async throws -> [String] {
        try await strings(DeadLetterSQL.unfinished)
    }

    /// The one text column of `sql`'s rows.
    private func strings(_ sql: String) async throws -> [String] {
        var values: [String] = []
        for try await value in try await client.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(String.self) {
            values.append(value)
        }
        return values
    }

    public func claimOperation(id: String, owner: String, leaseUntilMs: Int64, nowMs: Int64) async throws -> Bool {
        let query = PostgresQuery(
            unsafeSQL: DeadLetterSQL.claim { "$\($0)" }, binds: Self.bindings([.text(owner), .integer(leaseUntilMs), .text(id), .integer(nowMs)]))
        for try await _ in try await client.query(query, logger: logger) { return true }
        return false
    }

    public func settle(_ letters: [HeldDeadLetter], events: [WarrenEvent], for operation: DeadLetterOperation, nowMs: Int64) async throws -> DeadLetterOperation {
        guard let last = letters.last else { return operation }
        let count = try await client.withTransaction(logger: logger) { connection in
            var still: Set<String> = []
            let rows = try await rows(
                DeadLetterSQL.settle(operation.action, count: letters.count) { "$\($0)" },
                DeadLetterSQL.settleValues(letters, operation: operation, nowMs: nowMs), on: connection)
            for try await (id, at) in rows.decode((String, Int64).self) { still.insert("\(at):\(id)") }
            let settled = zip(letters, events).filter { still.contains("\($0.0.atMs):\($0.0.messageID)") }.map(\.1)
            try await recordNow(settled, on: connection, withDeadLetterRecords: false)
            try await connection.query(
                PostgresQuery(
                    unsafeSQL: DeadLetterSQL.advance { "$\($0)" },
                    binds: Self.bindings([.integer(Int64(settled.count)), .integer(last.atMs), .text(last.messageID), .integer(nowMs), .text(operation.id)])),
                logger: logger)
            return settled.count
        }
        return operation.advanced(by: count, to: last.cursor, nowMs: nowMs)
    }

    public func finishOperation(id: String, status: DeadLetterOperation.Status, error: String?, nowMs: Int64) async throws {
        try await client.query(
            PostgresQuery(
                unsafeSQL: DeadLetterSQL.finish { "$\($0)" },
                binds: Self.bindings([.text(status.rawValue), error.map(JobSQL.Value.text) ?? .null, .integer(nowMs), .text(id)])),
            logger: logger)
    }

    /// `($1,$2,…),(…)`; `casts` gives a column (1-based) a type cast, for a text bind into a JSONB column.
    private static func placeholders(rows: Int, columns: Int, casts: [Int: String] = [:]) -> String {
        (0..<rows).map { row in
            "(" + (1...columns).map { column in "$\(row * columns + column)" + (casts[column].map { "::\($0)" } ?? "") }
                .joined(separator: ",") + ")"
        }.joined(separator: ",")
    }

    private static func insertEvents(_ events: ArraySlice<WarrenEvent>) throws -> PostgresQuery {
        var binds = PostgresBindings(capacity: events.count * 15)
        for event in events {
            binds.append(event.messageID!)
            binds.append(event.event.rawValue)
            binds.append(event.type)
            binds.append(event.queue)
            binds.append(event.attempt.map(Int32.init(clamping:)))
            binds.append(event.atMs)
            binds.append(event.queueWaitMs)
            binds.append(event.durationMs)
            binds.append(event.error)
            binds.append(event.reason)
            binds.append(event.nextAttemptAtMs)
            binds.append(event.host)
            binds.append(event.traceID)
            binds.append(event.startedAtMs)
            binds.append(event.queueWaitApproxS)
        }
        return PostgresQuery(
            unsafeSQL: """
                INSERT INTO events (message_id, event, type, queue, attempt, at_ms, queue_wait_ms, duration_ms, error, reason,
                    next_attempt_at_ms, host, trace_id, started_at_ms, queue_wait_approx_s) VALUES \(placeholders(rows: events.count, columns: 15))
                \(JobSQL.eventRecordedAgain(conflictTarget: "(message_id, at_ms, event, (COALESCE(attempt, 0)))"))
                """, binds: binds)
    }

    /// Merges each job's update (``JobUpdate``: one per job, as PostgreSQL updates a row at most once per statement)
    /// with its stored row.
    private static func upsertJobs(_ updates: [JobUpdate]) throws -> PostgresQuery {
        var binds = PostgresBindings(capacity: updates.count * 13)
        for update in updates {
            binds.append(update.messageID)
            binds.append(update.type)
            binds.append(update.queue)
            binds.append(update.status)
            binds.append(Int32(clamping: update.attempts))
            binds.append(update.publishedAtMs)
            binds.append(update.updatedAtMs)
            binds.append(Int32(update.updatedPhase))
            binds.append(update.nextAttemptAtMs)
            binds.append(update.reason)
            binds.append(update.lastError)
            binds.append(update.traceID)
            binds.append(update.lastEventAtMs)
        }
        let newer = """
            (EXCLUDED.updated_at_ms > jobs.updated_at_ms OR
             (EXCLUDED.updated_at_ms = jobs.updated_at_ms AND EXCLUDED.updated_phase >= jobs.updated_phase))
            """
        return PostgresQuery(
            unsafeSQL: """
                INSERT INTO jobs (message_id, type, queue, status, attempts, published_at_ms, updated_at_ms, updated_phase,
                    next_attempt_at_ms, reason, last_error, trace_id, last_event_at_ms)
                VALUES \(placeholders(rows: updates.count, columns: 13))
                ON CONFLICT (message_id) DO UPDATE SET
                    type = COALESCE(jobs.type, EXCLUDED.type),
                    published_at_ms = LEAST(jobs.published_at_ms, EXCLUDED.published_at_ms),
                    attempts = GREATEST(jobs.attempts, EXCLUDED.attempts),
                    trace_id = COALESCE(jobs.trace_id, EXCLUDED.trace_id),
                    status = CASE WHEN \(newer) THEN EXCLUDED.status ELSE jobs.status END,
                    next_attempt_at_ms = CASE WHEN \(newer) THEN EXCLUDED.next_attempt_at_ms ELSE jobs.next_attempt_at_ms END,
                    reason = CASE WHEN \(newer) THEN EXCLUDED.reason ELSE jobs.reason END,
                    queue = CASE WHEN EXCLUDED.updated_at_ms > 0 THEN EXCLUDED.queue ELSE jobs.queue END,
                    last_error = COALESCE(EXCLUDED.last_error, jobs.last_error),
                    updated_phase = CASE WHEN \(newer) THEN EXCLUDED.updated_phase ELSE jobs.updated_phase END,
                    updated_at_ms = GREATEST(jobs.updated_at_ms, EXCLUDED.updated_at_ms),
                    last_event_at_ms = GREATEST(jobs.last_event_at_ms, EXCLUDED.last_event_at_ms)
                """, binds: binds)
    }

    /// The records of dead letters, as their events report them; with `held` (the messages of dead letters taken off
    /// their queues, one per event) they are held.
    private static func insertDeadLetters(_ events: [WarrenEvent], held: [StoredMessage]? = nil) throws -> PostgresQuery {
        var binds = PostgresBindings(capacity: events.count * 15)
        let encoder = JSONEncoder()
        for (index, event) in events.enumerated() {
            let failure = FailureFingerprint(type: event.type, reason: event.reason, error: event.error)
            binds.append(event.messageID!)
            binds.append(event.atMs)
            binds.append(event.queue)
            binds.append(event.type)
            binds.append(event.reason)
            binds.append(event.error)
            binds.append(event.headers.flatMap { try? encoder.encode($0) }.map { String(decoding: $0, as: UTF8.self) })
            binds.append(event.body)
            binds.append(event.bodyEncoding)
            binds.append(event.bodyTruncated)
            binds.append(failure.groupID)
            binds.append(failure.maskedError)
            if let message = held?[index] {
                binds.append(try message.encodedProperties())
                binds.append(message.base64Body)
                binds.append(Int32(1))
            }
        }
        let conflict = held == nil ? JobSQL.deadLetterRecordKept : DeadLetterSQL.holdOnConflict
        return PostgresQuery(
            unsafeSQL: """
                INSERT INTO dead_letters (message_id, at_ms, queue, type, reason, error, headers, body, body_encoding,
                    body_truncated, group_id, fingerprint\(held == nil ? "" : DeadLetterSQL.heldColumns))
                VALUES \(placeholders(rows: events.count, columns: held == nil ? 12 : 15, casts: [7: "jsonb"]))
                \(conflict)
                """, binds: binds)
    }

    /// The columns of a ``JobSummary``, in the order ``summaries(_:)`` decodes them.
    private static let summaryColumns = """
        message_id, type, queue, status, attempts, published_at_ms, last_event_at_ms, next_attempt_at_ms, reason,
        last_error, trace_id
        """

    private func summaries(_ rows: PostgresRowSequence) async throws -> [JobSummary] {
        var summaries: [JobSummary] = []
        for try await (id, type, queue, status, attempts, published, updated, next, reason, error, trace) in rows.decode(
            (String, String?, String, String, Int, Int64?, Int64, Int64?, String?, String?, String?).self)
        {
            summaries.append(JobSummary(
                messageID: id, type: type, queue: queue, state: JobState(rawValue: status), attempts: attempts,
                publishedAtMs: published, updatedAtMs: updated, nextAttemptAtMs: next, reason: reason, lastError: error,
                traceID: trace))
        }
        return summaries
    }

    public func job(messageID: String) async throws -> JobStatus? {
        var binds = PostgresBindings()
        binds.append(messageID)
        let rows = try await client.query(
            PostgresQuery(unsafeSQL: "SELECT \(Self.summaryColumns) FROM jobs WHERE message_id = $1", binds: binds), logger: logger)
        guard let summary = try await summaries(rows).first else { return nil }
        var job = JobStatus(summary: summary, timeline: [])
        var events: [WarrenEvent] = []
        let eventRows = try await client.query(
            """
            SELECT event, type, queue, attempt, at_ms, queue_wait_ms, duration_ms, error, reason, next_attempt_at_ms, host, trace_id,
                started_at_ms, queue_wait_approx_s
            FROM events WHERE message_id = \(messageID)
            ORDER BY at_ms, CASE event WHEN 'published' THEN 0 WHEN 'started' THEN 1 ELSE 2 END, id LIMIT \(unescaped: String(LedgerBounds.eventsPerJob))
            """, logger: logger)
        for try await row in eventRows {
            let (kind, type, queue, attempt, at, wait, duration, error, reason, next, host, trace, started, approximateWait) = try row.decode(
                (String, String?, String, Int?, Int64, Int64?, Int64?, String?, String?, Int64?, String?, String?, Int64?, Int64?).self)
            var event = WarrenEvent(
                event: WarrenEvent.Kind(rawValue: kind), messageID: messageID, type: type, queue: queue, attempt: attempt, atMs: at,
                queueWaitMs: wait, durationMs: duration, error: error, reason: reason, nextAttemptAtMs: next, host: host, traceID: trace)
            event.startedAtMs = started
            event.queueWaitApproxS = approximateWait
            events.append(event)
        }
        job.timeline = JobStatus.timeline(of: events)
        return job
    }

    public func jobs(matching query: JobQuery) async throws -> JobPage {
        let (conditions, values) = JobSQL.conditions(of: query) { "$\($0)" }
        let rows = try await client.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT \(Self.summaryColumns) FROM jobs \(conditions)
                    ORDER BY last_event_at_ms DESC, message_id DESC LIMIT \(query.limit + 1)
                    """, binds: Self.bindings(values)), logger: logger)
        return JobPage.of(try await summaries(rows), limit: query.limit)
    }

    public func deadLetters(messageID: String) async throws -> [DeadLetterRecord] {
        var binds = PostgresBindings()
        binds.append(messageID)
        let rows = try await client.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT message_id, at_ms, queue, type, reason, error, group_id, headers::text, body, body_encoding, body_truncated,
                        held, settled, settled_by
                    FROM dead_letters WHERE message_id = $1 ORDER BY at_ms DESC LIMIT \(LedgerBounds.deadLettersPerJob)
                    """, binds: binds), logger: logger)
        var records: [DeadLetterRecord] = []
        for try await row in rows {
            let (id, at, queue, type, reason, error, group, headers, body, encoding, truncated, held, settled, settledBy) = try row.decode(
                (String, Int64, String, String?, String?, String?, String?, String?, String?, String?, Bool?, Int, String?, String?).self)
            records.append(DeadLetterRecord(
                messageID: id, atMs: at, queue: queue, type: type, reason: reason, error: error, groupID: group,
                headers: headers.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) }, body: body,
                bodyEncoding: encoding, bodyTruncated: truncated, held: held == 1, settled: settled, settledBy: settledBy))
        }
        return records
    }

    public func deadLetters(matching query: DeadLetterQuery) async throws -> DeadLetterPage {
        let (sql, values) = JobSQL.deadLetters(query) { "$\($0)" }
        let rows = try await client.query(PostgresQuery(unsafeSQL: sql, binds: Self.bindings(values)), logger: logger)
        var records: [DeadLetterRecord] = []
        for try await (id, at, queue, type, reason, error, group, held, settled, settledBy) in rows.decode(
            (String, Int64, String, String?, String?, String?, String?, Int, String?, String?).self)
        {
            records.append(DeadLetterRecord(
                messageID: id, atMs: at, queue: queue, type: type, reason: reason, error: error, groupID: group, held: held == 1,
                settled: settled, settledBy: settledBy))
        }
        return DeadLetterPage.of(records, limit: query.limit)
    }

    public func failureGroups(matching query: FailureGroupQuery) async throws -> [FailureGroup] {
        let (sql, values) = JobSQL.failureGroups(query) { "$\($0)" }
        var counted: [(String?, Int, Int64, Int64)] = []
        let rows = try await client.query(PostgresQuery(unsafeSQL: sql, binds: Self.bindings(values)), logger: logger)
        for try await row in rows.decode((String?, Int, Int64, Int64).self) { counted.append(row) }
        var groups: [FailureGroup] = []
        for (id, count, first, last) in counted {
            var group = FailureGroup(
                groupID: id ?? "", type: nil, reason: nil, error: "", count: count, firstAtMs: first, lastAtMs: last, sampleMessageID: "")
            let sample = try await client.query(
                PostgresQuery(unsafeSQL: JobSQL.failureGroupSample(placeholder: "$1"), binds: Self.bindings([.text(id ?? "")])), logger: logger)
            for try await (type, reason, fingerprint, message) in sample.decode((String?, String?, String?, String).self) {
                (group.type, group.reason, group.error, group.sampleMessageID) = (type, reason, fingerprint ?? "", message)
            }
            groups.append(group)
        }
        return groups
    }

    public func prune(_ policy: RetentionPolicy, nowMs: Int64) async throws -> PruneResult {
        var result = PruneResult()
        for selection in JobSQL.pruneSelections(policy, nowMs: nowMs, placeholder: { "$\($0)" }) {
            while true {
                var sql = selection.sql
                if let maxJobs = selection.keepingAtMost {
                    var count = 0
                    for try await n in try await client.query("SELECT COUNT(*) FROM jobs", logger: logger).decode(Int.self) { count = n }
                    guard count > maxJobs else { break }
                    sql += " LIMIT \(min(count - maxJobs, JobSQL.prunedPerTransaction))"
                } else {
                    sql += " LIMIT \(JobSQL.prunedPerTransaction)"
                }
                // Selected and deleted in one transaction; rows another ledger deleted meanwhile are simply gone.
                let (jobs, events) = try await client.withTransaction(logger: logger) { connection in
                    var ids: [String] = []
                    let rows = try await connection.query(PostgresQuery(unsafeSQL: sql, binds: Self.bindings(selection.values)), logger: logger)
                    for try await id in rows.decode(String.self) { ids.append(id) }
                    guard !ids.isEmpty else { return (0, 0) }
                    var list = PostgresBindings()
                    list.append(ids)
                    var deleted = 0
                    for try await n in try await connection.query(
                        PostgresQuery(
                            unsafeSQL: "WITH gone AS (DELETE FROM events WHERE message_id = ANY($1) RETURNING 1) SELECT COUNT(*) FROM gone",
                            binds: list), logger: logger
                    ).decode(Int.self) { deleted = n }
                    try await connection.query(PostgresQuery(unsafeSQL: "DELETE FROM dead_letters WHERE message_id = ANY($1)", binds: list), logger: logger)
                    try await connection.query(PostgresQuery(unsafeSQL: "DELETE FROM jobs WHERE message_id = ANY($1)", binds: list), logger: logger)
                    return (ids.count, deleted)
                }
                result.jobs += jobs
                result.events += events
                if jobs == 0 || (jobs < JobSQL.prunedPerTransaction && selection.keepingAtMost == nil) { break }
            }
        }
        let auditCutoff = policy.cutoffs(nowMs: nowMs).audit
        if auditCutoff != Int64.min {
            let sql = "WITH gone AS (\(JobSQL.pruneAudit { "$\($0)" }) RETURNING 1) SELECT COUNT(*) FROM gone"
            for try await n in try await client.query(
                PostgresQuery(unsafeSQL: sql, binds: Self.bindings([.integer(auditCutoff)])), logger: logger
            ).decode(Int.self) { result.auditEntries = n }
        }
        return result
    }

    private static func bindings(_ values: [JobSQL.Value]) -> PostgresBindings {
        var binds = PostgresBindings(capacity: values.count)
        for value in values {
            switch value {
            case .text(let text): binds.append(text)
            case .integer(let integer): binds.append(integer)
            case .null: binds.appendNull()
            }
        }
        return binds
    }

    public func recordAudit(_ entry: AuditEntry) async throws -> AuditEntry {
        let query = PostgresQuery(unsafeSQL: JobSQL.insertAudit { "$\($0)" } + " RETURNING id", binds: Self.bindings(JobSQL.auditValues(entry)))
        var recorded = entry
        for try await id in try await client.query(query, logger: logger).decode(Int64.self) { recorded.id = id }
        return recorded
    }

    public func auditLog(limit: Int, before: Int64?) async throws -> [AuditEntry] {
        let values: [JobSQL.Value] = (before.map { [.integer($0)] } ?? []) + [.integer(Int64(min(max(limit, 1), 500)))]
        let rows = try await client.query(
            PostgresQuery(unsafeSQL: JobSQL.auditLog(before: before) { "$\($0)" }, binds: Self.bindings(values)), logger: logger)
        var entries: [AuditEntry] = []
        for try await (id, at, actor, role, action, target, count, outcome, request) in rows.decode(
            (Int64, Int64, String, String, String, String, Int64, String, String).self)
        {
            entries.append(AuditEntry(
                id: id, atMs: at, actor: actor, role: role, action: action, target: target, count: Int(count), outcome: outcome,
                requestID: request))
        }
        return entries
    }

    public func queues() async throws -> [String] {
        try await strings(JobSQL.distinctQueues)
    }

    public func eventCount() async throws -> Int {
        for try await count in try await client.query("SELECT COUNT(*) FROM events", logger: logger).decode(Int.self) { return count }
        return 0
    }

    public func close() async throws {
        running.cancel()
        await running.value
    }
}
