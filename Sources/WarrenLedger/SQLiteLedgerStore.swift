import Foundation
import Logging
import SQLiteNIO
import Warren

/// Where a ledger keeps its record: every event, and each job's current state.
public protocol LedgerStore: Sendable {
    /// Creates or upgrades the schema (versioned migrations); idempotent.
    func migrate() async throws
    /// Records a batch in one transaction: when it returns, the batch is committed; when it throws, none of it is.
    func record(_ events: [WarrenEvent]) async throws
    /// A job's state and its attempts; `nil` when the ledger never heard of it (or pruned it).
    func job(messageID: String) async throws -> JobStatus?
    /// One page of the jobs that match `query`, newest first.
    func jobs(matching query: JobQuery) async throws -> JobPage
    /// A job's dead letters (more than one when it was replayed and failed again), newest first, with headers and body.
    func deadLetters(messageID: String) async throws -> [DeadLetterRecord]
    /// One page of the dead letters that match `query`, newest first, without headers and body.
    func deadLetters(matching query: DeadLetterQuery) async throws -> DeadLetterPage
    /// The groups of dead letters that failed alike (``FailureGroup``), the most recently seen first.
    func failureGroups(matching query: FailureGroupQuery) async throws -> [FailureGroup]
    /// The queues the ledger holds jobs of, in name order (at most 1,000), found by skipping through the queue index
    /// rather than reading every job.
    func queues() async throws -> [String]
    /// Deletes the jobs (rows, events, dead letters) that `policy` no longer keeps at `nowMs` (milliseconds since
    /// 1970), a bounded number per transaction so that recording goes on meanwhile.
    func prune(_ policy: RetentionPolicy, nowMs: Int64) async throws -> PruneResult
    /// Appends to the audit log; returns the entry with its id.
    func recordAudit(_ entry: AuditEntry) async throws -> AuditEntry
    /// The audit log, newest first: `limit` entries older than the entry `before` (by id), or the newest.
    func auditLog(limit: Int, before: Int64?) async throws -> [AuditEntry]
    /// Commits dead letters taken off their queues (``DeadLetterIntake``), in one transaction: each one's `dead-letter`
    /// event (one record with the worker's own, whichever comes first) and its whole message, held until it is
    /// replayed or purged. A dead letter already settled is not held again (a copy redelivered after its commit).
    func take(_ letters: [IngestedDeadLetter]) async throws
    /// The held dead letters of `filter`, oldest first (by time, then message id), `limit` after `cursor`.
    func heldDeadLetters(matching filter: DeadLetterFilter, after cursor: LedgerCursor?, limit: Int) async throws -> [HeldDeadLetter]
    /// How many held dead letters `filter` selects.
    func countHeldDeadLetters(matching filter: DeadLetterFilter) async throws -> Int
    /// Records a new operation (``DeadLetterQueueActions`` runs it).
    func createOperation(_ operation: DeadLetterOperation) async throws
    func operation(id: String) async throws -> DeadLetterOperation?
    /// The newest `limit` operations, newest first.
    func operations(limit: Int) async throws -> [DeadLetterOperation]
    /// The ids of the operations still running (at most 100, oldest first).
    func unfinishedOperations() async throws -> [String]
    /// Takes or renews operation `id`'s lease for `owner` until `leaseUntilMs`; `false` when it is not running or
    /// another owner's lease has not run out at `nowMs`.
    func claimOperation(id: String, owner: String, leaseUntilMs: Int64, nowMs: Int64) async throws -> Bool
    /// In one transaction: settles `letters` (at most 1,000) for `operation` (those still held; `events`, one per letter
    /// in the same order, are recorded for those), and moves its progress past the last of them.
    /// - Returns: the operation as recorded now.
    func settle(_ letters: [HeldDeadLetter], events: [WarrenEvent], for operation: DeadLetterOperation, nowMs: Int64) async throws -> DeadLetterOperation
    /// Ends operation `id`: `done`, or `failed` with `error`.
    func finishOperation(id: String, status: DeadLetterOperation.Status, error: String?, nowMs: Int64) async throws
    /// The schema version in place (0 before ``migrate()``).
    func schemaVersion() async throws -> Int
    /// The store's identity, made when it was first migrated: the same for every process on one PostgreSQL database,
    /// another for every SQLite file. Its ledgers' queue carries it (``Ledger``).
    /// - Throws: the store's error; ``LedgerStoreError`` before ``migrate()``.
    func identity() async throws -> String
    /// Events recorded in all.
    func eventCount() async throws -> Int
    func close() async throws
}

/// The embedded store: one SQLite file (sqlite-nio; its calls run on NIO's thread pool, never on the cooperative
/// pool). One writing process: give each process its own file, or use PostgreSQL for several ledgers. Within the
/// process, writes (recording, pruning) take turns on one connection, and reads use another, so a reader never sees
/// a transaction before it commits.
public final class SQLiteLedgerStore: LedgerStore {
    public let path: String
    private let connection: SQLiteConnection
    private let reader: SQLiteConnection
    private let writes = AsyncMutex()
    private let bounds: LedgerBoundsReport

    /// The schema versions, in order; each runs once, in a transaction, and is recorded in `ledger_migrations`.
    static let migrations: [(version: Int, statements: [String])] = [
        (1, [
            """
            CREATE TABLE events (
                id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, event TEXT NOT NULL, type TEXT, queue TEXT NOT NULL,
                attempt INTEGER, at_ms INTEGER NOT NULL, queue_wait_ms INTEGER, duration_ms INTEGER, error TEXT,
                reason TEXT, next_attempt_at_ms INTEGER, host TEXT, trace_id TEXT)
            """,
            "CREATE INDEX events_by_job ON events (message_id, at_ms)",
            """
            CREATE TABLE jobs (
                message_id TEXT PRIMARY KEY, type TEXT, queue TEXT NOT NULL, status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, published_at_ms INTEGER, updated_at_ms INTEGER NOT NULL,
                updated_phase INTEGER NOT NULL DEFAULT 0,
                next_attempt_at_ms INTEGER, reason TEXT, last_error TEXT, trace_id TEXT)
            """,
            "CREATE INDEX jobs_by_type_status ON jobs (type, status, updated_at_ms)",
            "CREATE INDEX jobs_by_queue_status ON jobs (queue, status, updated_at_ms)",
            """
            CREATE TABLE dead_letters (
                message_id TEXT NOT NULL, at_ms INTEGER NOT NULL, queue TEXT NOT NULL, type TEXT, reason TEXT, error TEXT,
                headers TEXT, body TEXT, body_encoding TEXT, body_truncated INTEGER, PRIMARY KEY (message_id, at_ms))
            """,
        ]),
        // Searches and retention go by the time of a job's latest event, `published` included.
        (2, [
            "ALTER TABLE jobs ADD COLUMN last_event_at_ms INTEGER NOT NULL DEFAULT 0",
            "UPDATE jobs SET last_event_at_ms = MAX(updated_at_ms, COALESCE(published_at_ms, 0))",
        ] + JobSQL.version2),
        (3, JobSQL.version3),
        (4, JobSQL.version4(idColumn: "INTEGER PRIMARY KEY", integer: "INTEGER")),
        (5, DeadLetterSQL.version5(integer: "INTEGER")),
        // The store's identity, which its ledgers' queue carries (``Ledger``): one queue per store.
        (6, ["CREATE TABLE ledger_identity (id TEXT PRIMARY KEY)", "INSERT INTO ledger_identity (id) VALUES (lower(hex(randomblob(16))))"]),
        (7, JobSQL.version7),
    ]

    /// Opens (creating when missing) the database at `path`.
    /// - Throws: SQLite's error when the file cannot be opened.
    public init(path: String, logger: Logger = Logger(label: "warren.ledger.sqlite")) async throws {
        self.path = path
        bounds = LedgerBoundsReport(logger: logger)
        connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        // WAL: readers (a dashboard) never block the writer; NORMAL: a commit is durable against a crash of the
        // process (not of the machine) without an fsync each; statement journals and the page cache in memory (a
        // big multi-row upsert otherwise writes its undo pages to a temporary file).
        for pragma in ["journal_mode = WAL", "synchronous = NORMAL", "temp_store = MEMORY", "cache_size = -65536"] {
            _ = try await connection.query("PRAGMA \(pragma)")
        }
        reader = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        _ = try await reader.query("PRAGMA cache_size = -65536")
    }

    public func migrate() async throws {
        try await writes.withLock { try await migrateNow() }
    }

    private func migrateNow() async throws {
        _ = try await connection.query(
            "CREATE TABLE IF NOT EXISTS ledger_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)")
        let applied = Set(try await connection.query("SELECT version FROM ledger_migrations").compactMap { $0.column("version")?.integer })
        for migration in Self.migrations where !applied.contains(migration.version) {
            try await transaction {
                for statement in migration.statements { _ = try await connection.query(statement) }
                _ = try await connection.query(
                    "INSERT INTO ledger_migrations (version, applied_at_ms) VALUES (?, ?)",
                    [.integer(migration.version), .integer(Int(Date().timeIntervalSince1970 * 1000))])
            }
        }
        // Dead letters recorded before version 3 get their failure group.
        while true {
            let rows = try await connection.query(
                "SELECT message_id, at_ms, type, reason, error FROM dead_letters WHERE group_id IS NULL LIMIT \(JobSQL.backfillBatch)")
            guard !rows.isEmpty else { break }
            try await transaction {
                for row in rows {
                    let failure = FailureFingerprint(
                        type: row.column("type")?.string, reason: row.column("reason")?.string, error: row.column("error")?.string)
                    _ = try await connection.query(
                        "UPDATE dead_letters SET group_id = ?, fingerprint = ? WHERE message_id = ? AND at_ms = ?",
                        [.text(failure.groupID), .text(failure.maskedError), row.column("message_id") ?? .null, row.column("at_ms") ?? .null])
                }
            }
        }
    }

    public func identity() async throws -> String {
        guard let id = try await reader.query("SELECT id FROM ledger_identity").first?.column("id")?.string else {
            throw LedgerStoreError(.invalidURL, "the store has no identity: migrate it first")
        }
        return id
    }

    public func schemaVersion() async throws -> Int {
        try await reader.query("SELECT MAX(version) AS version FROM ledger_migrations").first?.column("version")?.integer ?? 0
    }

    private func transaction(_ body: () async throws -> Void) async throws {
        _ = try await connection.query("BEGIN IMMEDIATE")
        do {
            try await body()
            _ = try await connection.query("COMMIT")
        } catch {
            _ = try? await connection.query("ROLLBACK")
            throw error
        }
    }

    /// Rows per INSERT: SQLite binds at most 32,766 values per statement.
    private static let rowsPerStatement = 400

    public func record(_ events: [WarrenEvent]) async throws {
        guard !events.isEmpty else { return }
        let events = events.filter { $0.messageID != nil }
        try await writes.withLock { try await transaction { try await recordNow(events, withDeadLetterRecords: true) } }
    }

    /// Records `events` in the transaction under way; `withDeadLetterRecords`: a `dead-letter` event writes its dead
    /// letter's record too, unless one exists (``JobSQL/deadLetterRecordKept``: a taken dead letter's record shows its copy).
    private func recordNow(_ events: [WarrenEvent], withDeadLetterRecords: Bool) async throws {
        let events = bounds.bounded(events.filter { $0.messageID != nil })
        for slice in stride(from: 0, to: events.count, by: Self.rowsPerStatement).map({ events[$0..<min($0 + Self.rowsPerStatement, events.count)] }) {
            let (kept, skipped) = LedgerBounds.withinJobBounds(
                slice, recordedEvents: try await recordedCounts("events", of: slice),
                recordedDeadLetters: try await recordedCounts("dead_letters", of: slice.filter { $0.event == .deadLetter }))
            bounds.report(skipped)
            guard !kept.isEmpty else { continue }
            let chunk = kept[...]
            try await insertEvents(JobSQL.distinctEvents(chunk)[...])
            try await upsertJobs(JobUpdate.fold(chunk))
            let letters = chunk.filter { $0.event == .deadLetter }
            if withDeadLetterRecords, !letters.isEmpty { try await insertDeadLetters(letters) }
        }
    }

    /// How many rows of `table` (events, dead_letters) each job of `events` has.
    private func recordedCounts(_ table: String, of events: some Collection<WarrenEvent>) async throws -> [String: Int] {
        let ids = Array(Set(events.compactMap(\.messageID)))
        guard !ids.isEmpty else { return [:] }
        let rows = try await connection.query(
            JobSQL.countsPerJob(table, count: ids.count) { _ in "?" }, ids.map { .text($0) })
        return Dictionary(
            rows.compactMap { row in row.column("message_id")?.string.map { ($0, row.column("n")?.integer ?? 0) } }, uniquingKeysWith: { $1 })
    }

    public func take(_ letters: [IngestedDeadLetter]) async throws {
        guard !letters.isEmpty else { return }
        let letters = letters.filter { !$0.messageID.isEmpty }.map(bounds.bounded(_:))
        try await writes.withLock { try await transaction {
            var letters = letters
            if letters.contains(where: \.keyedByReceipt) {
                var kept: [IngestedDeadLetter] = []
                for letter in letters {
                    if letter.keyedByReceipt, !(try await connection.query(
                        DeadLetterSQL.heldAlready { _ in "?" }, [.text(letter.messageID), .text(letter.message.base64Body)]).isEmpty)
                    {
                        continue
                    }
                    kept.append(letter)
                }
                letters = kept
            }
            // The records with their messages; the events and the jobs' rows after them.
            for start in stride(from: 0, to: letters.count, by: Self.rowsPerStatement) {
                let chunk = letters[start..<min(start + Self.rowsPerStatement, letters.count)]
                try await insertDeadLetters(chunk.map(\.event), held: chunk.map(\.message))
            }
            try await recordNow(letters.map(\.event), withDeadLetterRecords: false)
        } }
    }

    public func heldDeadLetters(matching filter: DeadLetterFilter, after cursor: LedgerCursor?, limit: Int) async throws -> [HeldDeadLetter] {
        let (sql, values) = DeadLetterSQL.held(filter, after: cursor, limit: limit) { _ in "?" }
        return try await reader.query(sql, values.map(Self.data(_:))).map { row in
            HeldDeadLetter(
                messageID: row.column("message_id")?.string ?? "", atMs: Self.int64(row, "at_ms") ?? 0, queue: row.column("queue")?.string ?? "",
                message: try StoredMessage(
                    encodedProperties: row.column("message_properties")?.string ?? "", base64Body: row.column("message_body")?.string ?? ""))
        }
    }

    public func countHeldDeadLetters(matching filter: DeadLetterFilter) async throws -> Int {
        let (sql, values) = DeadLetterSQL.countHeld(filter) { _ in "?" }
        return try await reader.query(sql, values.map(Self.data(_:))).first?.column("n")?.integer ?? 0
    }

    public func createOperation(_ operation: DeadLetterOperation) async throws {
        try await writes.withLock {
            _ = try await connection.query(DeadLetterSQL.insertOperation { _ in "?" }, try DeadLetterSQL.operationValues(operation).map(Self.data(_:)))
        }
    }

    public func operation(id: String) async throws -> DeadLetterOperation? {
        try await reader.query(DeadLetterSQL.operations(byID: true) { _ in "?" }, [.text(id)]).first.map(Self.operation(from:))
    }

    public func operations(limit: Int) async throws -> [DeadLetterOperation] {
        try await reader.query(DeadLetterSQL.operations(byID: false) { _ in "?" }, [.integer(min(max(limit, 1), 500))]).map(Self.operation(from:))
    }

    public func unfinishedOperations() async throws -> [String] {
        try await reader.query(DeadLetterSQL.unfinished).compactMap { $0.column("id")?.string }
    }

    public func claimOperation(id: String, owner: String, leaseUntilMs: Int64, nowMs: Int64) async throws -> Bool {
        try await writes.withLock {
            !(try await connection.query(
                DeadLetterSQL.claim { "?\($0)" }, [.text(owner), .integer(Int(leaseUntilMs)), .text(id), .integer(Int(nowMs))]
            ).isEmpty)
        }
    }

    public func settle(_ letters: [HeldDeadLetter], events: [WarrenEvent], for operation: DeadLetterOperation, nowMs: Int64) async throws -> DeadLetterOperation {
        guard let last = letters.last else { return operation }
        var settled: [WarrenEvent] = []
        try await writes.withLock { try await transaction {
            let rows = try await connection.query(
                DeadLetterSQL.settle(operation.action, count: letters.count) { "?\($0)" },
                DeadLetterSQL.settleValues(letters, operation: operation, nowMs: nowMs).map(Self.data(_:)))
            let still = Set(rows.map { "\(Self.int64($0, "at_ms") ?? 0):\($0.column("message_id")?.string ?? "")" })
            settled = zip(letters, events).filter { still.contains("\($0.0.atMs):\($0.0.messageID)") }.map(\.1)
            try await recordNow(settled, withDeadLetterRecords: false)
            _ = try await connection.query(DeadLetterSQL.advance { _ in "?" }, [
                .integer(settled.count), .integer(Int(last.atMs)), .text(last.messageID), .integer(Int(nowMs)), .text(operation.id),
            ])
        } }
        return operation.advanced(by: settled.count, to: last.cursor, nowMs: nowMs)
    }

    public func finishOperation(id: String, status: DeadLetterOperation.Status, error: String?, nowMs: Int64) async throws {
        try await writes.withLock {
            _ = try await connection.query(
                DeadLetterSQL.finish { _ in "?" }, [.text(status.rawValue), Self.text(error), .integer(Int(nowMs)), .text(id)])
        }
    }

    private static func operation(from row: SQLiteRow) -> DeadLetterOperation {
        DeadLetterSQL.operation(
            id: row.column("id")?.string ?? "", action: row.column("action")?.string ?? "", filter: row.column("filter")?.string ?? "{}",
            actor: row.column("actor")?.string ?? "", role: row.column("role")?.string ?? "", createdAtMs: int64(row, "created_at_ms") ?? 0,
            status: row.column("status")?.string ?? "", total: int64(row, "total") ?? 0, settled: int64(row, "settled") ?? 0,
            cursorAtMs: int64(row, "cursor_at_ms"), cursorMessageID: row.column("cursor_message_id")?.string,
            updatedAtMs: int64(row, "updated_at_ms") ?? 0, error: row.column("error")?.string)
    }

    private func insertEvents(_ events: ArraySlice<WarrenEvent>) async throws {
        var binds: [SQLiteData] = []
        binds.reserveCapacity(events.count * 15)
        for event in events {
            binds += [
                .text(event.messageID!), .text(event.event.rawValue), Self.text(event.type), .text(event.queue),
                Self.integer(event.attempt.map(Int64.init)), .integer(Int(event.atMs)), Self.integer(event.queueWaitMs),
                Self.integer(event.durationMs), Self.text(event.error), Self.text(event.reason),
                Self.integer(event.nextAttemptAtMs), Self.text(event.host), Self.text(event.traceID), Self.integer(event.startedAtMs),
                Self.integer(event.queueWaitApproxS),
            ]
        }
        let row = "(" + Array(repeating: "?", count: 15).joined(separator: ",") + ")"
        _ = try await connection.query(
            """
            INSERT INTO events (message_id, event, type, queue, attempt, at_ms, queue_wait_ms, duration_ms, error,
                reason, next_attempt_at_ms, host, trace_id, started_at_ms, queue_wait_approx_s) VALUES \(Array(repeating: row, count: events.count).joined(separator: ","))
            \(JobSQL.eventRecordedAgain(conflictTarget: "(message_id, at_ms, event, COALESCE(attempt, 0))"))
            """, binds)
    }

    /// Merges each job's update (``JobUpdate``) with its stored row.
    private func upsertJobs(_ updates: [JobUpdate]) async throws {
        var binds: [SQLiteData] = []
        binds.reserveCapacity(updates.count * 13)
        for update in updates {
            binds += [
                .text(update.messageID), Self.text(update.type), .text(update.queue), .text(update.status),
                .integer(update.attempts), Self.integer(update.publishedAtMs), .integer(Int(update.updatedAtMs)),
                .integer(update.updatedPhase), Self.integer(update.nextAttemptAtMs), Self.text(update.reason),
                Self.text(update.lastError), Self.text(update.traceID), .integer(Int(update.lastEventAtMs)),
            ]
        }
        let row = "(" + Array(repeating: "?", count: 13).joined(separator: ",") + ")"
        let newer = """
            (excluded.updated_at_ms > jobs.updated_at_ms OR
             (excluded.updated_at_ms = jobs.updated_at_ms AND excluded.updated_phase >= jobs.updated_phase))
            """
        _ = try await connection.query(
            """
            INSERT INTO jobs (message_id, type, queue, status, attempts, published_at_ms, updated_at_ms, updated_phase,
                next_attempt_at_ms, reason, last_error, trace_id, last_event_at_ms)
            VALUES \(Array(repeating: row, count: updates.count).joined(separator: ","))
            ON CONFLICT (message_id) DO UPDATE SET
                type = COALESCE(jobs.type, excluded.type),
                published_at_ms = MIN(COALESCE(jobs.published_at_ms, excluded.published_at_ms),
                    COALESCE(excluded.published_at_ms, jobs.published_at_ms)),
                attempts = MAX(jobs.attempts, excluded.attempts),
                trace_id = COALESCE(jobs.trace_id, excluded.trace_id),
                status = CASE WHEN \(newer) THEN excluded.status ELSE jobs.status END,
                next_attempt_at_ms = CASE WHEN \(newer) THEN excluded.next_attempt_at_ms ELSE jobs.next_attempt_at_ms END,
                reason = CASE WHEN \(newer) THEN excluded.reason ELSE jobs.reason END,
                queue = CASE WHEN excluded.updated_at_ms > 0 THEN excluded.queue ELSE jobs.queue END,
                last_error = COALESCE(excluded.last_error, jobs.last_error),
                updated_phase = CASE WHEN \(newer) THEN excluded.updated_phase ELSE jobs.updated_phase END,
                updated_at_ms = MAX(jobs.updated_at_ms, excluded.updated_at_ms),
                last_event_at_ms = MAX(jobs.last_event_at_ms, excluded.last_event_at_ms)
            """, binds)
    }

    /// The records of dead letters, as their events report them; with `held` (the messages of dead letters taken off
    /// their queues, one per event) they are held.
    private func insertDeadLetters(_ events: [WarrenEvent], held: [StoredMessage]? = nil) async throws {
        var binds: [SQLiteData] = []
        let encoder = JSONEncoder()
        for (index, event) in events.enumerated() {
            let headers = event.headers.flatMap { try? encoder.encode($0) }.map { String(decoding: $0, as: UTF8.self) }
            let failure = FailureFingerprint(type: event.type, reason: event.reason, error: event.error)
            binds += [
                .text(event.messageID!), .integer(Int(event.atMs)), .text(event.queue), Self.text(event.type),
                Self.text(event.reason), Self.text(event.error), Self.text(headers), Self.text(event.body),
                Self.text(event.bodyEncoding), event.bodyTruncated.map { .integer($0 ? 1 : 0) } ?? .null,
                .text(failure.groupID), .text(failure.maskedError),
            ]
            if let message = held?[index] { binds += [.text(try message.encodedProperties()), .text(message.base64Body), .integer(1)] }
        }
        let row = "(" + Array(repeating: "?", count: held == nil ? 12 : 15).joined(separator: ",") + ")"
        let conflict = held == nil ? JobSQL.deadLetterRecordKept : DeadLetterSQL.holdOnConflict
        _ = try await connection.query(
            """
            INSERT INTO dead_letters (message_id, at_ms, queue, type, reason, error, headers, body, body_encoding,
                body_truncated, group_id, fingerprint\(held == nil ? "" : DeadLetterSQL.heldColumns)) VALUES \(Array(repeating: row, count: events.count).joined(separator: ","))
            \(conflict)
            """, binds)
    }

    public func job(messageID: String) async throws -> JobStatus? {
        guard let row = try await reader.query("SELECT * FROM jobs WHERE message_id = ?", [.text(messageID)]).first else {
            return nil
        }
        let events = try await reader.query(
            """
            SELECT * FROM events WHERE message_id = ?
            ORDER BY at_ms, CASE event WHEN 'published' THEN 0 WHEN 'started' THEN 1 ELSE 2 END, id LIMIT \(LedgerBounds.eventsPerJob)
            """, [.text(messageID)]
        ).map(Self.event(from:))
        return JobStatus(summary: Self.summary(from: row), timeline: JobStatus.timeline(of: events))
    }

    public func jobs(matching query: JobQuery) async throws -> JobPage {
        let (conditions, values) = JobSQL.conditions(of: query) { _ in "?" }
        let rows = try await reader.query(
            """
            SELECT * FROM jobs \(conditions)
            ORDER BY last_event_at_ms DESC, message_id DESC LIMIT \(query.limit + 1)
            """, values.map(Self.data(_:)))
        return JobPage.of(rows.map(Self.summary(from:)), limit: query.limit)
    }

    public func deadLetters(messageID: String) async throws -> [DeadLetterRecord] {
        try await reader.query("SELECT * FROM dead_letters WHERE message_id = ? ORDER BY at_ms DESC LIMIT \(LedgerBounds.deadLettersPerJob)", [.text(messageID)]).map { row in
            var record = Self.deadLetter(from: row)
            record.headers = row.column("headers")?.string.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) }
            record.body = row.column("body")?.string
            record.bodyEncoding = row.column("body_encoding")?.string
            record.bodyTruncated = row.column("body_truncated")?.integer.map { $0 != 0 }
            return record
        }
    }

    public func deadLetters(matching query: DeadLetterQuery) async throws -> DeadLetterPage {
        let (sql, values) = JobSQL.deadLetters(query) { _ in "?" }
        return DeadLetterPage.of(try await reader.query(sql, values.map(Self.data(_:))).map(Self.deadLetter(from:)), limit: query.limit)
    }

    private static func deadLetter(from row: SQLiteRow) -> DeadLetterRecord {
        DeadLetterRecord(
            messageID: row.column("message_id")?.string ?? "", atMs: int64(row, "at_ms") ?? 0, queue: row.column("queue")?.string ?? "",
            type: row.column("type")?.string, reason: row.column("reason")?.string, error: row.column("error")?.string,
            groupID: row.column("group_id")?.string, held: row.column("held")?.integer == 1, settled: row.column("settled")?.string,
            settledBy: row.column("settled_by")?.string)
    }

    public func failureGroups(matching query: FailureGroupQuery) async throws -> [FailureGroup] {
        let (sql, values) = JobSQL.failureGroups(query) { _ in "?" }
        var groups: [FailureGroup] = []
        for row in try await reader.query(sql, values.map(Self.data(_:))) {
            let id = row.column("group_id")?.string ?? ""
            let sample = try await reader.query(JobSQL.failureGroupSample(placeholder: "?"), [.text(id)]).first
            groups.append(FailureGroup(
                groupID: id, type: sample?.column("type")?.string, reason: sample?.column("reason")?.string,
                error: sample?.column("fingerprint")?.string ?? "", count: row.column("n")?.integer ?? 0,
                firstAtMs: Self.int64(row, "first_at_ms") ?? 0, lastAtMs: Self.int64(row, "last_at_ms") ?? 0,
                sampleMessageID: sample?.column("message_id")?.string ?? ""))
        }
        return groups
    }

    public func prune(_ policy: RetentionPolicy, nowMs: Int64) async throws -> PruneResult {
        var result = PruneResult()
        for selection in JobSQL.pruneSelections(policy, nowMs: nowMs, placeholder: { _ in "?" }) {
            while true {
                var sql = selection.sql
                var values = selection.values
                if let maxJobs = selection.keepingAtMost {
                    let count = try await reader.query("SELECT COUNT(*) AS n FROM jobs").first?.column("n")?.integer ?? 0
                    guard count > maxJobs else { break }
                    sql += " LIMIT \(min(count - maxJobs, JobSQL.prunedPerTransaction))"
                    values = []
                } else {
                    sql += " LIMIT \(JobSQL.prunedPerTransaction)"
                }
                let ids = try await reader.query(sql, values.map(Self.data(_:))).compactMap { $0.column("message_id")?.string }
                guard !ids.isEmpty else { break }
                let events = try await writes.withLock { try await deleteJobs(ids) }
                result.jobs += ids.count
                result.events += events
                if ids.count < JobSQL.prunedPerTransaction && selection.keepingAtMost == nil { break }
            }
        }
        let auditCutoff = policy.cutoffs(nowMs: nowMs).audit
        if auditCutoff != Int64.min {
            result.auditEntries = try await writes.withLock {
                _ = try await connection.query(JobSQL.pruneAudit { _ in "?" }, [.integer(Int(auditCutoff))])
                return try await connection.query("SELECT changes() AS n").first?.column("n")?.integer ?? 0
            }
        }
        return result
    }

    /// Deletes the jobs `ids` with their events and dead letters, in one transaction; returns the events deleted.
    private func deleteJobs(_ ids: [String]) async throws -> Int {
        var events = 0
        try await transaction {
            let list = "(" + Array(repeating: "?", count: ids.count).joined(separator: ",") + ")"
            let binds = ids.map { SQLiteData.text($0) }
            _ = try await connection.query("DELETE FROM events WHERE message_id IN \(list)", binds)
            events = try await connection.query("SELECT changes() AS n").first?.column("n")?.integer ?? 0
            _ = try await connection.query("DELETE FROM dead_letters WHERE message_id IN \(list)", binds)
            _ = try await connection.query("DELETE FROM jobs WHERE message_id IN \(list)", binds)
        }
        return events
    }

    public func recordAudit(_ entry: AuditEntry) async throws -> AuditEntry {
        try await writes.withLock {
            let values = JobSQL.auditValues(entry).map(Self.data(_:))
            _ = try await connection.query(JobSQL.insertAudit { _ in "?" }, values)
            var recorded = entry
            recorded.id = Int64(try await connection.query("SELECT last_insert_rowid() AS id").first?.column("id")?.integer ?? 0)
            return recorded
        }
    }

    public func auditLog(limit: Int, before: Int64?) async throws -> [AuditEntry] {
        let values: [SQLiteData] = (before.map { [.integer(Int($0))] } ?? []) + [.integer(min(max(limit, 1), 500))]
        return try await reader.query(JobSQL.auditLog(before: before) { _ in "?" }, values).map { row in
            AuditEntry(
                id: Self.int64(row, "id") ?? 0, atMs: Self.int64(row, "at_ms") ?? 0, actor: row.column("actor")?.string ?? "",
                role: row.column("role")?.string ?? "", action: row.column("action")?.string ?? "", target: row.column("target")?.string ?? "",
                count: row.column("count")?.integer ?? 0, outcome: row.column("outcome")?.string ?? "",
                requestID: row.column("request_id")?.string ?? "")
        }
    }

    public func queues() async throws -> [String] {
        try await reader.query(JobSQL.distinctQueues).compactMap { $0.column("queue")?.string }
    }

    public func eventCount() async throws -> Int {
        try await reader.query("SELECT COUNT(*) AS n FROM events").first?.column("n")?.integer ?? 0
    }

    public func close() async throws {
        try await reader.close()
        try await connection.close()
    }

    private static func summary(from row: SQLiteRow) -> JobSummary {
        JobSummary(
            messageID: row.column("message_id")?.string ?? "", type: row.column("type")?.string,
            queue: row.column("queue")?.string ?? "", state: JobState(rawValue: row.column("status")?.string ?? "pending"),
            attempts: row.column("attempts")?.integer ?? 0, publishedAtMs: int64(row, "published_at_ms"),
            updatedAtMs: int64(row, "last_event_at_ms") ?? 0, nextAttemptAtMs: int64(row, "next_attempt_at_ms"),
            reason: row.column("reason")?.string, lastError: row.column("last_error")?.string,
            traceID: row.column("trace_id")?.string)
    }

    private static func data(_ value: JobSQL.Value) -> SQLiteData {
        switch value {
        case .text(let text): .text(text)
        case .integer(let integer): .integer(Int(integer))
        case .null: .null
        }
    }

    private static func event(from row: SQLiteRow) -> WarrenEvent {
        var event = WarrenEvent(
            event: WarrenEvent.Kind(rawValue: row.column("event")?.string ?? ""), messageID: row.column("message_id")?.string,
            type: row.column("type")?.string, queue: row.column("queue")?.string ?? "", attempt: row.column("attempt")?.integer,
            atMs: int64(row, "at_ms") ?? 0, queueWaitMs: int64(row, "queue_wait_ms"), durationMs: int64(row, "duration_ms"),
            error: row.column("error")?.string, reason: row.column("reason")?.string,
            nextAttemptAtMs: int64(row, "next_attempt_at_ms"), host: row.column("host")?.string,
            traceID: row.column("trace_id")?.string)
        event.startedAtMs = int64(row, "started_at_ms")
        event.queueWaitApproxS = int64(row, "queue_wait_approx_s")
        return event
    }

    private static func int64(_ row: SQLiteRow, _ column: String) -> Int64? {
        guard let data = row.column(column), data != .null else { return nil }
        return data.integer.map(Int64.init)
    }

    private static func text(_ value: String?) -> SQLiteData { value.map { .text($0) } ?? .null }
    private static func integer(_ value: Int64?) -> SQLiteData { value.map { .integer(Int($0)) } ?? .null }
}
