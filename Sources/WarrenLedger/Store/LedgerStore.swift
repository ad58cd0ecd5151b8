import ServiceLifecycle
import Warren

/// Where a ledger keeps its record: every event, and each job's current state.
///
/// A store is a `Service`: what it needs while in use (PostgreSQL's connection pool) runs in its ``run()``, in the task
/// of whoever runs it. In a host, put the store in the `ServiceGroup` before the services that use it (a group stops
/// its services in reverse order, so the store stops last); elsewhere (a tool, a script, a test) use
/// ``withRunning(_:)``. A PostgreSQL store's queries wait until it runs and fail once it stopped; a SQLite store has
/// nothing to run and answers either way.
public protocol LedgerStore: Service {
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
    func heldDeadLetters(matching filter: DeadLetterFilter, after cursor: LedgerCursor?, limit: Int) async throws
        -> [HeldDeadLetter]
    /// How many held dead letters `filter` selects.
    func countHeldDeadLetters(matching filter: DeadLetterFilter) async throws -> Int
    /// Records a new operation (``DeadLetterOperationRunner`` runs it).
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
    func settle(_ letters: [HeldDeadLetter], events: [WarrenEvent], for operation: DeadLetterOperation, nowMs: Int64)
        async throws -> DeadLetterOperation
    /// Ends operation `id`: `done`, or `failed` with `error`.
    func finishOperation(id: String, status: DeadLetterOperation.Status, error: String?, nowMs: Int64) async throws
    /// The schema version in place (0 before ``migrate()``).
    func schemaVersion() async throws -> Int
    /// The store's identity, made when it was first migrated: the same for every process on one PostgreSQL database,
    /// another for every SQLite file. Its ledgers' queue carries it (``Ledger``).
    /// - Throws: the store's error; ``LedgerStoreError`` before ``migrate()``.
    func identity() async throws -> String
    /// Runs what the store needs while it is in use until the task is cancelled or its service group shuts down
    /// gracefully; a store runs once.
    /// - Throws: ``LedgerStoreError`` with ``LedgerStoreError/Code/notRunning`` for a PostgreSQL store run a second time.
    func run() async throws
    /// Releases the store's connections once nothing uses it any more (SQLite's files; a PostgreSQL store's close when
    /// its ``run()`` returns).
    func close() async throws
}

extension LedgerStore {
    /// Nothing to run: waits for the end of its task or of its service group's graceful shutdown.
    public func run() async throws {
        try? await gracefulShutdown()
    }

    /// Runs the store (``run()``) while `body` runs, then stops it and waits until it stopped: for a store used
    /// outside a service group. Returns what `body` returns.
    /// - Throws: what `body` throws.
    public func withRunning<Result>(
        isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> Result
    ) async throws -> Result {
        try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { group in
            group.addTask { try await self.run() }
            defer { group.cancelAll() }
            return try await body()
        }
    }
}

extension LedgerStore {
    /// Events recorded in all: no longer a requirement of the protocol (a full count, for tests and benchmarks).
    /// - Throws: ``LedgerStoreError`` for a store that is not a ``SQLLedgerStore``.
    @available(*, deprecated, message: "call eventCount() on SQLLedgerStore")
    public func eventCount() async throws -> Int {
        guard let store = self as? SQLLedgerStore else {
            throw LedgerStoreError(.invalidURL, "this store does not count its events")
        }
        return try await store.eventCount()
    }
}
