import Foundation
import Logging
import Warren

#if PostgreSQL
    import PostgresNIO
#endif

/// The ledger's store on SQL: the embedded SQLite file (``init(path:logger:)``) or a shared PostgreSQL database
/// (``init(url:logger:)``). Its logic and SQL are written once; what differs between the two databases is a dialect
/// (placeholders, `MAX` or `GREATEST`, JSON columns, migrations) and the adapter that talks to the driver.
///
/// - SQLite: one writing process — give each process its own file, or use PostgreSQL for several ledgers. Within the
///   process, writes (recording, pruning) take turns on one connection and reads use another, so a reader never sees
///   a transaction before it commits. Its calls run on NIO's thread pool, never on the cooperative pool.
/// - PostgreSQL: postgres-nio's pooled client, which runs in ``run()`` (see ``LedgerStore`` for where to run a store;
///   its queries wait until it runs). Ledgers on one database share the work: each commits its batches in its
///   own transactions, and the schema is migrated under an advisory lock, so two starting at once do not race.
public final class SQLLedgerStore: LedgerStore {
    let database: any LedgerDatabase
    private let bounds: LedgerBoundsReport
    private var dialect: LedgerDialect { database.dialect }

    init(database: any LedgerDatabase, logger: Logger) {
        self.database = database
        bounds = LedgerBoundsReport(logger: logger)
    }

    /// Opens (creating when missing) the SQLite database at `path`.
    /// - Throws: SQLite's error when the file cannot be opened.
    public convenience init(path: String, logger: Logger = Logger(label: "warren.ledger.sqlite")) async throws {
        self.init(database: try await SQLiteLedgerDatabase(path: path, logger: logger), logger: logger)
    }

    #if PostgreSQL
        /// A PostgreSQL database.
        /// - Parameter url: `postgres://user:password@host:port/database?sslmode=…&sslrootcert=…` (the password stays out of
        ///   every log and error). `sslmode` and `sslrootcert` have libpq's meanings (``PostgresTLSMode``); without them
        ///   TLS is used when the server offers it, its certificate unchecked (`prefer`). The server is checked once,
        ///   with a connection of its own, by ``migrate()``: a refused TLS handshake or login is a clear error at start.
        ///   Its connection pool runs in ``run()``: until then, its queries wait.
        /// - Throws: ``WarrenError`` with ``WarrenError/Code/invalidConfiguration`` for a URL that does not parse;
        ///   ``LedgerStoreError`` for an unknown `sslmode` or parameter, or an `sslrootcert` that cannot be read.
        public convenience init(url: String, logger: Logger = Logger(label: "warren.ledger.postgres")) throws {
            try self.init(url: url, logger: logger, notRunningWarningAfter: .seconds(10))
        }

        convenience init(url: String, logger: Logger, notRunningWarningAfter: Duration) throws {
            let server = try PostgresLedgerDatabase.server(url: url)
            let tls: PostgresClient.Configuration.TLS
            do {
                tls = try server.tls.client()
            } catch let error as LedgerStoreError {
                throw error
            } catch {
                throw LedgerStoreError(.invalidURL, "sslrootcert: \(error)")
            }
            let configuration = PostgresClient.Configuration(
                host: server.host, port: server.port, username: server.username, password: server.password,
                database: server.database,
                tls: tls)
            self.init(
                database: PostgresLedgerDatabase(
                    configuration: configuration, server: server, logger: logger,
                    notRunningWarningAfter: notRunningWarningAfter),
                logger: logger)
        }

        /// A PostgreSQL database, as postgres-nio's client configuration says. Its connection pool runs in ``run()``.
        public convenience init(
            configuration: PostgresClient.Configuration, logger: Logger = Logger(label: "warren.ledger.postgres")
        ) {
            self.init(
                database: PostgresLedgerDatabase(configuration: configuration, server: nil, logger: logger),
                logger: logger)
        }
    #endif

    /// The SQLite file, for a store on SQLite.
    public var path: String? { (database as? SQLiteLedgerDatabase)?.path }

    // MARK: Schema

    public func migrate() async throws {
        try await database.prepare()
        try await database.transaction { [dialect] transaction in
            // One migrating process at a time where several may share the database; the others find the work done.
            if let lock = dialect.migrationLock { try await transaction.query(lock, []) }
            try await transaction.query(
                "CREATE TABLE IF NOT EXISTS ledger_migrations (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
                [])
            let applied = Set(
                try await transaction.query("SELECT version FROM ledger_migrations", []).compactMap {
                    $0.integer("version")
                })
            for migration in dialect.migrations where !applied.contains(Int64(migration.version)) {
                for statement in migration.statements { try await transaction.query(statement, []) }
                try await transaction.query(
                    "INSERT INTO ledger_migrations (version, applied_at_ms) VALUES (\(dialect.placeholder(1)), \(dialect.placeholder(2)))",
                    [.integer(Int64(migration.version)), .integer(Self.nowMs())])
            }
            // Dead letters recorded before version 3 get their failure group.
            while true {
                let rows = try await transaction.query(
                    "SELECT message_id, at_ms, type, reason, error FROM dead_letters WHERE group_id IS NULL LIMIT \(JobSQL.backfillBatch)",
                    [])
                guard !rows.isEmpty else { break }
                for row in rows {
                    let failure = FailureFingerprint(
                        type: row.text("type"), reason: row.text("reason"), error: row.text("error"))
                    try await transaction.query(
                        "UPDATE dead_letters SET group_id = \(dialect.placeholder(1)), fingerprint = \(dialect.placeholder(2)) "
                            + "WHERE message_id = \(dialect.placeholder(3)) AND at_ms = \(dialect.placeholder(4))",
                        [
                            .text(failure.groupID), .text(failure.maskedError), .init(row.text("message_id")),
                            .init(row.integer("at_ms")),
                        ])
                }
            }
        }
    }

    public func identity() async throws -> String {
        guard let id = try await database.read("SELECT id FROM ledger_identity", []).first?.text("id") else {
            throw LedgerStoreError(.invalidURL, "the store has no identity: migrate it first")
        }
        return id
    }

    public func schemaVersion() async throws -> Int {
        Int(
            try await database.read("SELECT MAX(version) AS version FROM ledger_migrations", []).first?.integer(
                "version") ?? 0)
    }

    // MARK: Recording

    public func record(_ events: [WarrenEvent]) async throws {
        let events = events.filter { $0.messageID != nil }
        guard !events.isEmpty else { return }
        try await database.transaction { transaction in
            try await self.recordNow(events, in: transaction, withDeadLetterRecords: true)
        }
    }

    /// Records `events` in `transaction`; `withDeadLetterRecords`: a `dead-letter` event writes its dead letter's
    /// record too, unless one exists (``JobSQL/deadLetterRecordKept``: a taken dead letter's record shows its copy).
    private func recordNow(_ events: [WarrenEvent], in transaction: any LedgerTransaction, withDeadLetterRecords: Bool)
        async throws
    {
        let events = bounds.bounded(events.filter { $0.messageID != nil })
        let perStatement = dialect.rowsPerStatement
        for start in stride(from: 0, to: events.count, by: perStatement) {
            let slice = events[start..<min(start + perStatement, events.count)]
            let (kept, skipped) = LedgerBounds.withinJobBounds(
                slice, recordedEvents: try await recordedCounts("events", of: slice, in: transaction),
                recordedDeadLetters: try await recordedCounts(
                    "dead_letters", of: slice.filter { $0.event == .deadLetter }, in: transaction))
            bounds.report(skipped)
            guard !kept.isEmpty else { continue }
            let chunk = kept[...]
            try await insertEvents(JobSQL.distinctEvents(chunk)[...], in: transaction)
            try await upsertJobs(JobUpdate.fold(chunk), in: transaction)
            let letters = chunk.filter { $0.event == .deadLetter }
            if withDeadLetterRecords, !letters.isEmpty { try await insertDeadLetters(letters, in: transaction) }
        }
    }

    /// How many rows of `table` (events, dead_letters) each job of `events` has.
    private func recordedCounts(
        _ table: String, of events: some Collection<WarrenEvent>, in transaction: any LedgerTransaction
    ) async throws -> [String: Int] {
        let ids = Array(Set(events.compactMap(\.messageID)))
        guard !ids.isEmpty else { return [:] }
        let rows = try await transaction.query(
            JobSQL.countsPerJob(table, count: ids.count, placeholder: dialect.placeholder), ids.map(JobSQL.Value.text))
        return Dictionary(
            rows.compactMap { row in row.text("message_id").map { ($0, Int(row.integer("n") ?? 0)) } },
            uniquingKeysWith: { $1 })
    }

    private func insertEvents(_ events: ArraySlice<WarrenEvent>, in transaction: any LedgerTransaction) async throws {
        var values: [JobSQL.Value] = []
        values.reserveCapacity(events.count * 15)
        for event in events {
            values += [
                .text(event.messageID ?? ""), .text(event.event.rawValue), .init(event.type), .text(event.queue),
                .init(event.attempt),
                .integer(event.atMs), .init(event.queueWaitMs), .init(event.durationMs), .init(event.error),
                .init(event.reason),
                .init(event.nextAttemptAtMs), .init(event.host), .init(event.traceID), .init(event.startedAtMs),
                .init(event.queueWaitApproxS),
            ]
        }
        try await transaction.query(
            """
            INSERT INTO events (message_id, event, type, queue, attempt, at_ms, queue_wait_ms, duration_ms, error, reason,
                next_attempt_at_ms, host, trace_id, started_at_ms, queue_wait_approx_s) VALUES \(dialect.rows(events.count, columns: 15))
            \(JobSQL.eventRecordedAgain(conflictTarget: dialect.eventsOnceTarget))
            """, values)
    }

    /// Merges each job's update (``JobUpdate``: one per job, as PostgreSQL updates a row at most once per statement)
    /// with its stored row.
    private func upsertJobs(_ updates: [JobUpdate], in transaction: any LedgerTransaction) async throws {
        var values: [JobSQL.Value] = []
        values.reserveCapacity(updates.count * 16)
        for update in updates {
            values += [
                .text(update.messageID), .init(update.type), .text(update.queue), .text(update.status),
                .integer(Int64(update.attempts)),
                .init(update.publishedAtMs), .integer(update.updatedAtMs), .integer(Int64(update.updatedPhase)),
                .init(update.nextAttemptAtMs),
                .init(update.reason), .init(update.lastError), .init(update.traceID), .integer(update.lastEventAtMs),
                .init(update.dueAtMs), .init(update.schedule), .init(update.scheduledForMs),
            ]
        }
        let (greatest, least) = (dialect.greatest, dialect.least)
        let newer = """
            (excluded.updated_at_ms > jobs.updated_at_ms OR
             (excluded.updated_at_ms = jobs.updated_at_ms AND excluded.updated_phase >= jobs.updated_phase))
            """
        try await transaction.query(
            """
            INSERT INTO jobs (message_id, type, queue, status, attempts, published_at_ms, updated_at_ms, updated_phase,
                next_attempt_at_ms, reason, last_error, trace_id, last_event_at_ms, due_at_ms, schedule, scheduled_for_ms)
            VALUES \(dialect.rows(updates.count, columns: 16))
            ON CONFLICT (message_id) DO UPDATE SET
                type = COALESCE(jobs.type, excluded.type),
                due_at_ms = COALESCE(jobs.due_at_ms, excluded.due_at_ms),
                schedule = COALESCE(jobs.schedule, excluded.schedule),
                scheduled_for_ms = CASE WHEN jobs.schedule IS NULL THEN excluded.scheduled_for_ms ELSE jobs.scheduled_for_ms END,
                published_at_ms = \(least)(COALESCE(jobs.published_at_ms, excluded.published_at_ms),
                    COALESCE(excluded.published_at_ms, jobs.published_at_ms)),
                attempts = \(greatest)(jobs.attempts, excluded.attempts),
                trace_id = COALESCE(jobs.trace_id, excluded.trace_id),
                status = CASE WHEN \(newer) THEN excluded.status ELSE jobs.status END,
                next_attempt_at_ms = CASE WHEN \(newer) THEN excluded.next_attempt_at_ms ELSE jobs.next_attempt_at_ms END,
                reason = CASE WHEN \(newer) THEN excluded.reason ELSE jobs.reason END,
                queue = CASE WHEN excluded.updated_at_ms > 0 THEN excluded.queue ELSE jobs.queue END,
                last_error = COALESCE(excluded.last_error, jobs.last_error),
                updated_phase = CASE WHEN \(newer) THEN excluded.updated_phase ELSE jobs.updated_phase END,
                updated_at_ms = \(greatest)(jobs.updated_at_ms, excluded.updated_at_ms),
                last_event_at_ms = \(greatest)(jobs.last_event_at_ms, excluded.last_event_at_ms)
            """, values)
    }

    /// The records of dead letters, as their events report them; with `held` (the messages of dead letters taken off
    /// their queues, one per event) they are held.
    private func insertDeadLetters(
        _ events: [WarrenEvent], held: [StoredMessage]? = nil, in transaction: any LedgerTransaction
    ) async throws {
        var values: [JobSQL.Value] = []
        let encoder = JSONEncoder()
        for (index, event) in events.enumerated() {
            let headers = event.headers.flatMap { try? encoder.encode($0) }.map { String(decoding: $0, as: UTF8.self) }
            let failure = FailureFingerprint(type: event.type, reason: event.reason, error: event.error)
            values += [
                .text(event.messageID ?? ""), .integer(event.atMs), .text(event.queue), .init(event.type),
                .init(event.reason),
                .init(event.error), .init(headers), .init(event.body), .init(event.bodyEncoding),
                .init(event.bodyTruncated),
                .text(failure.groupID), .text(failure.maskedError),
            ]
            if let message = held?[index] {
                values += [.text(try message.encodedProperties()), .text(message.base64Body), .integer(1)]
            }
        }
        try await transaction.query(
            """
            INSERT INTO dead_letters (message_id, at_ms, queue, type, reason, error, headers, body, body_encoding,
                body_truncated, group_id, fingerprint\(held == nil ? "" : DeadLetterSQL.heldColumns))
            VALUES \(dialect.rows(events.count, columns: held == nil ? 12 : 15, json: [7]))
            \(held == nil ? JobSQL.deadLetterRecordKept : DeadLetterSQL.holdOnConflict)
            """, values)
    }

    // MARK: Dead letters held, and the operations on them

    public func take(_ letters: [IngestedDeadLetter]) async throws {
        let letters = letters.filter { !$0.messageID.isEmpty }.map(bounds.bounded(_:))
        guard !letters.isEmpty else { return }
        try await database.transaction { [dialect] transaction in
            var letters = letters
            if letters.contains(where: \.keyedByReceipt) {
                var kept: [IngestedDeadLetter] = []
                for letter in letters {
                    if letter.keyedByReceipt,
                        !(try await transaction.query(
                            DeadLetterSQL.heldAlready(placeholder: dialect.placeholder),
                            [.text(letter.messageID), .text(letter.message.base64Body)]
                        ).isEmpty)
                    {
                        continue
                    }
                    kept.append(letter)
                }
                letters = kept
            }
            // The records with their messages; the events and the jobs' rows after them.
            for start in stride(from: 0, to: letters.count, by: dialect.rowsPerStatement) {
                let chunk = letters[start..<min(start + dialect.rowsPerStatement, letters.count)]
                try await self.insertDeadLetters(chunk.map(\.event), held: chunk.map(\.message), in: transaction)
            }
            try await self.recordNow(letters.map(\.event), in: transaction, withDeadLetterRecords: false)
        }
    }

    public func heldDeadLetters(matching filter: DeadLetterFilter, after cursor: LedgerCursor?, limit: Int) async throws
        -> [HeldDeadLetter]
    {
        let (sql, values) = DeadLetterSQL.held(filter, after: cursor, limit: limit, placeholder: dialect.placeholder)
        return try await database.read(sql, values).map { row in
            HeldDeadLetter(
                messageID: row.text("message_id") ?? "", atMs: row.integer("at_ms") ?? 0,
                queue: row.text("queue") ?? "",
                message: try StoredMessage(
                    encodedProperties: row.text("message_properties") ?? "", base64Body: row.text("message_body") ?? "")
            )
        }
    }

    public func countHeldDeadLetters(matching filter: DeadLetterFilter) async throws -> Int {
        let (sql, values) = DeadLetterSQL.countHeld(filter, placeholder: dialect.placeholder)
        return Int(try await database.read(sql, values).first?.integer("n") ?? 0)
    }

    public func createOperation(_ operation: DeadLetterOperation) async throws {
        try await database.write(
            DeadLetterSQL.insertOperation(placeholder: dialect.placeholder),
            try DeadLetterSQL.operationValues(operation))
    }

    public func operation(id: String) async throws -> DeadLetterOperation? {
        try await database.read(DeadLetterSQL.operations(byID: true, placeholder: dialect.placeholder), [.text(id)])
            .first.map(Self.operation(from:))
    }

    public func operations(limit: Int) async throws -> [DeadLetterOperation] {
        try await database.read(
            DeadLetterSQL.operations(byID: false, placeholder: dialect.placeholder),
            [.integer(Int64(min(max(limit, 1), 500)))]
        )
        .map(Self.operation(from:))
    }

    public func unfinishedOperations() async throws -> [String] {
        try await database.read(DeadLetterSQL.unfinished, []).compactMap { $0.text("id") }
    }

    public func claimOperation(id: String, owner: String, leaseUntilMs: Int64, nowMs: Int64) async throws -> Bool {
        !(try await database.write(
            DeadLetterSQL.claim(placeholder: dialect.placeholder),
            [.text(owner), .integer(leaseUntilMs), .text(id), .integer(nowMs)]
        ).isEmpty)
    }

    public func settle(
        _ letters: [HeldDeadLetter], events: [WarrenEvent], for operation: DeadLetterOperation, nowMs: Int64
    ) async throws -> DeadLetterOperation {
        guard let last = letters.last else { return operation }
        let count = try await database.transaction { [dialect] transaction in
            let rows = try await transaction.query(
                DeadLetterSQL.settle(operation.action, count: letters.count, placeholder: dialect.placeholder),
                DeadLetterSQL.settleValues(letters, operation: operation, nowMs: nowMs))
            let still = Set(rows.map { "\($0.integer("at_ms") ?? 0):\($0.text("message_id") ?? "")" })
            let settled = zip(letters, events).filter { still.contains("\($0.0.atMs):\($0.0.messageID)") }.map(\.1)
            try await self.recordNow(settled, in: transaction, withDeadLetterRecords: false)
            try await transaction.query(
                DeadLetterSQL.advance(placeholder: dialect.placeholder),
                [
                    .integer(Int64(settled.count)), .integer(last.atMs), .text(last.messageID), .integer(nowMs),
                    .text(operation.id),
                ])
            return settled.count
        }
        return operation.advanced(by: count, to: last.cursor, nowMs: nowMs)
    }

    public func finishOperation(id: String, status: DeadLetterOperation.Status, error: String?, nowMs: Int64)
        async throws
    {
        try await database.write(
            DeadLetterSQL.finish(placeholder: dialect.placeholder),
            [.text(status.rawValue), .init(error), .integer(nowMs), .text(id)])
    }

    private static func operation(from row: LedgerRow) -> DeadLetterOperation {
        DeadLetterSQL.operation(
            id: row.text("id") ?? "", action: row.text("action") ?? "", filter: row.text("filter") ?? "{}",
            actor: row.text("actor") ?? "",
            role: row.text("role") ?? "", createdAtMs: row.integer("created_at_ms") ?? 0,
            status: row.text("status") ?? "",
            total: row.integer("total") ?? 0, settled: row.integer("settled") ?? 0,
            cursorAtMs: row.integer("cursor_at_ms"),
            cursorMessageID: row.text("cursor_message_id"), updatedAtMs: row.integer("updated_at_ms") ?? 0,
            error: row.text("error"))
    }

    // MARK: Reading

    /// The columns of a ``JobSummary``.
    private static let summaryColumns = """
        message_id, type, queue, status, attempts, published_at_ms, last_event_at_ms, next_attempt_at_ms, reason,
        last_error, trace_id, due_at_ms, schedule, scheduled_for_ms
        """

    public func job(messageID: String) async throws -> JobStatus? {
        let p = dialect.placeholder
        guard
            let row = try await database.read(
                "SELECT \(Self.summaryColumns) FROM jobs WHERE message_id = \(p(1))", [.text(messageID)]
            ).first
        else {
            return nil
        }
        let events = try await database.read(
            """
            SELECT event, message_id, type, queue, attempt, at_ms, queue_wait_ms, duration_ms, error, reason, next_attempt_at_ms, host,
                trace_id, started_at_ms, queue_wait_approx_s
            FROM events WHERE message_id = \(p(1))
            ORDER BY at_ms, CASE event WHEN 'published' THEN 0 WHEN 'started' THEN 1 ELSE 2 END, id LIMIT \(LedgerBounds.eventsPerJob)
            """, [.text(messageID)]
        ).map(Self.event(from:))
        return JobStatus(summary: Self.summary(from: row), timeline: JobStatus.timeline(of: events))
    }

    public func jobs(matching query: JobQuery) async throws -> JobPage {
        let (conditions, values) = JobSQL.conditions(of: query, placeholder: dialect.placeholder)
        let rows = try await database.read(
            """
            SELECT \(Self.summaryColumns) FROM jobs \(conditions)
            ORDER BY last_event_at_ms DESC, message_id DESC LIMIT \(query.limit + 1)
            """, values)
        return JobPage.of(rows.map(Self.summary(from:)), limit: query.limit)
    }

    public func deadLetters(messageID: String) async throws -> [DeadLetterRecord] {
        try await database.read(
            """
            SELECT message_id, at_ms, queue, type, reason, error, group_id, \(dialect.jsonText("headers")), body, body_encoding,
                body_truncated, held, settled, settled_by
            FROM dead_letters WHERE message_id = \(dialect.placeholder(1)) ORDER BY at_ms DESC LIMIT \(LedgerBounds.deadLettersPerJob)
            """, [.text(messageID)]
        ).map { row in
            var record = Self.deadLetter(from: row)
            record.headers = row.text("headers").flatMap {
                try? JSONDecoder().decode([String: String].self, from: Data($0.utf8))
            }
            record.body = row.text("body")
            record.bodyEncoding = row.text("body_encoding")
            record.bodyTruncated = row.boolean("body_truncated")
            return record
        }
    }

    public func deadLetters(matching query: DeadLetterQuery) async throws -> DeadLetterPage {
        let (sql, values) = JobSQL.deadLetters(query, placeholder: dialect.placeholder)
        return DeadLetterPage.of(try await database.read(sql, values).map(Self.deadLetter(from:)), limit: query.limit)
    }

    private static func deadLetter(from row: LedgerRow) -> DeadLetterRecord {
        DeadLetterRecord(
            messageID: row.text("message_id") ?? "", atMs: row.integer("at_ms") ?? 0, queue: row.text("queue") ?? "",
            type: row.text("type"),
            reason: row.text("reason"), error: row.text("error"), groupID: row.text("group_id"),
            held: row.integer("held") == 1,
            settled: row.text("settled"), settledBy: row.text("settled_by"))
    }

    public func failureGroups(matching query: FailureGroupQuery) async throws -> [FailureGroup] {
        let (sql, values) = JobSQL.failureGroups(query, placeholder: dialect.placeholder)
        var groups: [FailureGroup] = []
        for row in try await database.read(sql, values) {
            let id = row.text("group_id") ?? ""
            let sample = try await database.read(
                JobSQL.failureGroupSample(placeholder: dialect.placeholder(1)), [.text(id)]
            ).first
            groups.append(
                FailureGroup(
                    groupID: id, type: sample?.text("type"), reason: sample?.text("reason"),
                    error: sample?.text("fingerprint") ?? "",
                    count: Int(row.integer("n") ?? 0), firstAtMs: row.integer("first_at_ms") ?? 0,
                    lastAtMs: row.integer("last_at_ms") ?? 0,
                    sampleMessageID: sample?.text("message_id") ?? ""))
        }
        return groups
    }

    public func auditLog(limit: Int, before: Int64?) async throws -> [AuditEntry] {
        let values: [JobSQL.Value] = (before.map { [.integer($0)] } ?? []) + [.integer(Int64(min(max(limit, 1), 500)))]
        return try await database.read(JobSQL.auditLog(before: before, placeholder: dialect.placeholder), values).map {
            row in
            AuditEntry(
                id: row.integer("id") ?? 0, atMs: row.integer("at_ms") ?? 0, actor: row.text("actor") ?? "",
                role: row.text("role") ?? "",
                action: row.text("action") ?? "", target: row.text("target") ?? "",
                count: Int(row.integer("count") ?? 0),
                outcome: row.text("outcome") ?? "", requestID: row.text("request_id") ?? "")
        }
    }

    public func queues() async throws -> [String] {
        try await database.read(JobSQL.distinctQueues, []).compactMap { $0.text("queue") }
    }

    /// Events recorded in all (a full count: for tests and benchmarks, not for a hot path).
    public func eventCount() async throws -> Int {
        Int(try await database.read("SELECT COUNT(*) AS n FROM events", []).first?.integer("n") ?? 0)
    }

    private static func summary(from row: LedgerRow) -> JobSummary {
        JobSummary(
            messageID: row.text("message_id") ?? "", type: row.text("type"), queue: row.text("queue") ?? "",
            state: JobState(rawValue: row.text("status") ?? "pending"), attempts: Int(row.integer("attempts") ?? 0),
            publishedAtMs: row.integer("published_at_ms"), updatedAtMs: row.integer("last_event_at_ms") ?? 0,
            nextAttemptAtMs: row.integer("next_attempt_at_ms"), reason: row.text("reason"),
            lastError: row.text("last_error"),
            traceID: row.text("trace_id"), dueAtMs: row.integer("due_at_ms"), schedule: row.text("schedule"),
            scheduledForMs: row.integer("scheduled_for_ms"))
    }

    private static func event(from row: LedgerRow) -> WarrenEvent {
        var event = WarrenEvent(
            event: WarrenEvent.Kind(rawValue: row.text("event") ?? ""), messageID: row.text("message_id"),
            type: row.text("type"),
            queue: row.text("queue") ?? "", attempt: row.integer("attempt").map { Int(clamping: $0) },
            atMs: row.integer("at_ms") ?? 0,
            queueWaitMs: row.integer("queue_wait_ms"), durationMs: row.integer("duration_ms"), error: row.text("error"),
            reason: row.text("reason"), nextAttemptAtMs: row.integer("next_attempt_at_ms"), host: row.text("host"),
            traceID: row.text("trace_id"))
        event.startedAtMs = row.integer("started_at_ms")
        event.queueWaitApproxS = row.integer("queue_wait_approx_s")
        return event
    }

    // MARK: Writing the audit log, pruning

    public func recordAudit(_ entry: AuditEntry) async throws -> AuditEntry {
        var recorded = entry
        recorded.id =
            try await database.write(
                JobSQL.insertAudit(placeholder: dialect.placeholder) + " RETURNING id", JobSQL.auditValues(entry)
            )
            .first?.integer("id") ?? 0
        return recorded
    }

    public func prune(_ policy: RetentionPolicy, nowMs: Int64) async throws -> PruneResult {
        var result = PruneResult()
        for selection in JobSQL.pruneSelections(policy, nowMs: nowMs, placeholder: dialect.placeholder) {
            while true {
                var sql = selection.sql
                if let maxJobs = selection.keepingAtMost {
                    let count = Int(
                        try await database.read("SELECT COUNT(*) AS n FROM jobs", []).first?.integer("n") ?? 0)
                    guard count > maxJobs else { break }
                    sql += " LIMIT \(min(count - maxJobs, JobSQL.prunedPerTransaction))"
                } else {
                    sql += " LIMIT \(JobSQL.prunedPerTransaction)"
                }
                // Selected and deleted in one transaction; rows another ledger deleted meanwhile are simply gone.
                let (jobs, events) = try await database.transaction { [dialect, sql] transaction -> (Int, Int) in
                    let ids = try await transaction.query(sql, selection.values).compactMap { $0.text("message_id") }
                    guard !ids.isEmpty else { return (0, 0) }
                    let list = dialect.list(ids.count)
                    let values = ids.map(JobSQL.Value.text)
                    let events = try await Self.delete(
                        "DELETE FROM events WHERE message_id IN \(list)", values, in: transaction, dialect)
                    try await transaction.query("DELETE FROM dead_letters WHERE message_id IN \(list)", values)
                    try await transaction.query("DELETE FROM jobs WHERE message_id IN \(list)", values)
                    return (ids.count, events)
                }
                result.jobs += jobs
                result.events += events
                if jobs == 0 || (jobs < JobSQL.prunedPerTransaction && selection.keepingAtMost == nil) { break }
            }
        }
        let auditCutoff = policy.cutoffs(nowMs: nowMs).audit
        if auditCutoff != Int64.min {
            result.auditEntries = try await database.transaction { [dialect] transaction in
                try await Self.delete(
                    JobSQL.pruneAudit(placeholder: dialect.placeholder), [.integer(auditCutoff)], in: transaction,
                    dialect)
            }
        }
        return result
    }

    /// Runs the PostgreSQL client's connection pool until the task is cancelled or the service group shuts down
    /// gracefully; for SQLite, which has nothing to run, waits as long. See ``LedgerStore`` for where to run it.
    /// - Throws: ``LedgerStoreError`` with ``LedgerStoreError/Code/notRunning`` for a PostgreSQL store run a second time.
    public func run() async throws {
        try await database.run()
    }

    public func close() async throws {
        try await database.close()
    }

    /// Runs a `DELETE` and returns how many rows it removed, counted by the server.
    private static func delete(
        _ sql: String, _ values: [JobSQL.Value], in transaction: any LedgerTransaction, _ dialect: LedgerDialect
    ) async throws -> Int {
        switch dialect.deletedRows {
        case .changes:
            try await transaction.query(sql, values)
            return Int(try await transaction.query("SELECT changes() AS n", []).first?.integer("n") ?? 0)
        case .returningInCTE:
            return Int(
                try await transaction.query("WITH gone AS (\(sql) RETURNING 1) SELECT COUNT(*) AS n FROM gone", values)
                    .first?.integer("n") ?? 0)
        }
    }

    private static func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}

/// The embedded store: ``SQLLedgerStore`` on a SQLite file (``SQLLedgerStore/init(path:logger:)``).
public typealias SQLiteLedgerStore = SQLLedgerStore

/// The shared store: ``SQLLedgerStore`` on PostgreSQL (``SQLLedgerStore/init(url:logger:)``; the PostgreSQL trait).
public typealias PostgresLedgerStore = SQLLedgerStore
