import Warren

/// The ledger's SQL for searching and pruning jobs; a ``LedgerDialect`` says how a placeholder is written (`?1` for
/// SQLite, `$1` for PostgreSQL).
enum JobSQL {
    /// A value bound to a statement or read from a row.
    enum Value: Equatable, Sendable {
        case text(String)
        case integer(Int64)
        case boolean(Bool)
        case null

        init(_ text: String?) { self = text.map(Value.text) ?? .null }
        init(_ integer: Int64?) { self = integer.map(Value.integer) ?? .null }
        init(_ integer: Int?) { self = integer.map { .integer(Int64($0)) } ?? .null }
        init(_ boolean: Bool?) { self = boolean.map(Value.boolean) ?? .null }
    }

    /// A `WHERE` clause built condition by condition, its values numbered in order.
    struct Where {
        let placeholder: (Int) -> String
        private(set) var clauses: [String] = []
        private(set) var values: [Value] = []

        init(placeholder: @escaping (Int) -> String) { self.placeholder = placeholder }

        /// `column = value`, or another comparison: `clause` gets the value's placeholder.
        mutating func add(_ value: Value?, _ clause: (String) -> String) {
            guard let value else { return }
            values.append(value)
            clauses.append(clause(placeholder(values.count)))
        }

        /// The keyset condition of a page after `cursor`, newest first by (`timeColumn`, `message_id`), or oldest first.
        mutating func after(_ cursor: LedgerCursor?, timeColumn: String, oldestFirst: Bool = false) {
            guard let cursor else { return }
            values += [.integer(cursor.atMs), .text(cursor.messageID)]
            clauses.append(
                "(\(timeColumn), message_id) \(oldestFirst ? ">" : "<") (\(placeholder(values.count - 1)), \(placeholder(values.count)))"
            )
        }

        var sql: String { clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ") }
    }

    /// Schema version 2 after the jobs' new column: a settlement's start when its `started` event was folded into it
    /// (``WarrenEvent/startedAtMs``); an event is recorded once (a batch redelivered after a crash between
    /// its commit and its ack adds nothing); every search is newest first by (`last_event_at_ms`, `message_id`), after
    /// an optional equality on the type, queue or state.
    static let version2 = [
        "ALTER TABLE events ADD COLUMN started_at_ms BIGINT",
        "DELETE FROM events WHERE id NOT IN (SELECT MIN(id) FROM events GROUP BY message_id, at_ms, event, COALESCE(attempt, 0))",
        "DROP INDEX events_by_job",
        "CREATE UNIQUE INDEX events_once ON events (message_id, at_ms, event, COALESCE(attempt, 0))",
        "DROP INDEX jobs_by_type_status",
        "DROP INDEX jobs_by_queue_status",
        "CREATE INDEX jobs_by_time ON jobs (last_event_at_ms, message_id)",
        "CREATE INDEX jobs_by_status ON jobs (status, last_event_at_ms, message_id)",
        "CREATE INDEX jobs_by_type ON jobs (type, status, last_event_at_ms, message_id)",
        "CREATE INDEX jobs_by_queue ON jobs (queue, status, last_event_at_ms, message_id)",
    ]

    /// Schema version 3: dead letters grouped by failure (``FailureFingerprint``); the rows recorded before are given
    /// their group by the migration (``backfillBatch``).
    static let version3 = [
        "ALTER TABLE dead_letters ADD COLUMN group_id TEXT",
        "ALTER TABLE dead_letters ADD COLUMN fingerprint TEXT",
        "CREATE INDEX dead_letters_by_group ON dead_letters (group_id, at_ms)",
        "CREATE INDEX dead_letters_by_time ON dead_letters (at_ms)",
    ]

    /// Schema version 7: a foreign message's approximate queue wait, in whole seconds (``WarrenEvent/queueWaitApproxS``).
    static let version7 = ["ALTER TABLE events ADD COLUMN queue_wait_approx_s BIGINT"]

    /// Schema version 8: a job's due time (published due at a time) and, for a run of a recurring job, its schedule and
    /// tick, searchable by schedule (``WarrenEvent/dueAtMs``, ``WarrenEvent/schedule``, ``WarrenEvent/scheduledForMs``).
    static func version8(integer: String) -> [String] {
        [
            "ALTER TABLE jobs ADD COLUMN due_at_ms \(integer)",
            "ALTER TABLE jobs ADD COLUMN schedule TEXT",
            "ALTER TABLE jobs ADD COLUMN scheduled_for_ms \(integer)",
            "CREATE INDEX jobs_by_schedule ON jobs (schedule, last_event_at_ms, message_id)",
        ]
    }

    /// Schema version 4: the audit log of replays and purges (`id` is the SQLite rowid or a PostgreSQL serial: newest
    /// first is `ORDER BY id DESC`).
    static func version4(idColumn: String, integer: String) -> [String] {
        [
            """
            CREATE TABLE audit_log (
                id \(idColumn), at_ms \(integer) NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL,
                target TEXT NOT NULL, count \(integer) NOT NULL, outcome TEXT NOT NULL, request_id TEXT NOT NULL)
            """
        ]
    }

    static func insertAudit(placeholder: (Int) -> String) -> String {
        "INSERT INTO audit_log (at_ms, actor, role, action, target, count, outcome, request_id) VALUES (\((1...8).map(placeholder).joined(separator: ", ")))"
    }

    static func auditLog(before: Int64?, placeholder: (Int) -> String) -> String {
        "SELECT id, at_ms, actor, role, action, target, count, outcome, request_id FROM audit_log"
            + (before == nil ? "" : " WHERE id < \(placeholder(1))")
            + " ORDER BY id DESC LIMIT \(before == nil ? placeholder(1) : placeholder(2))"
    }

    /// An event recorded again (a batch redelivered; a dead letter's event from the intake's copy, then from its
    /// worker) fills in the timing the first one lacked — the queue wait, duration, start and host of a dead-lettered
    /// attempt, which only its worker knows — and changes nothing it had.
    static func eventRecordedAgain(conflictTarget: String) -> String {
        """
        ON CONFLICT \(conflictTarget) DO UPDATE SET queue_wait_ms = COALESCE(events.queue_wait_ms, excluded.queue_wait_ms),
            queue_wait_approx_s = COALESCE(events.queue_wait_approx_s, excluded.queue_wait_approx_s),
            duration_ms = COALESCE(events.duration_ms, excluded.duration_ms), started_at_ms = COALESCE(events.started_at_ms, excluded.started_at_ms),
            host = COALESCE(events.host, excluded.host), trace_id = COALESCE(events.trace_id, excluded.trace_id)
        """
    }

    /// `events` with one event per key of the `events_once` index (message id, time, kind, attempt): a later duplicate
    /// only fills in what the first lacked (PostgreSQL cannot update one row twice in a statement).
    static func distinctEvents(_ events: ArraySlice<WarrenEvent>) -> [WarrenEvent] {
        var index: [EventKey: Int] = [:]
        var result: [WarrenEvent] = []
        result.reserveCapacity(events.count)
        for event in events {
            let key = EventKey(
                id: event.messageID, at: event.atMs, kind: event.event.rawValue, attempt: event.attempt ?? 0)
            if let first = index[key] {
                result[first].queueWaitMs = result[first].queueWaitMs ?? event.queueWaitMs
                result[first].queueWaitApproxS = result[first].queueWaitApproxS ?? event.queueWaitApproxS
                result[first].durationMs = result[first].durationMs ?? event.durationMs
                result[first].startedAtMs = result[first].startedAtMs ?? event.startedAtMs
                result[first].host = result[first].host ?? event.host
                result[first].traceID = result[first].traceID ?? event.traceID
            } else {
                index[key] = result.count
                result.append(event)
            }
        }
        return result
    }

    private struct EventKey: Hashable {
        var id: String?
        var at: Int64
        var kind: String
        var attempt: Int
    }

    /// How many rows of `table` each of `count` message ids has (SQLite: a list of placeholders).
    static func countsPerJob(_ table: String, count: Int, placeholder: (Int) -> String) -> String {
        "SELECT message_id, COUNT(*) AS n FROM \(table) WHERE message_id IN (\((1...count).map(placeholder).joined(separator: ","))) GROUP BY message_id"
    }

    /// Deletes the audit entries written before a time (``RetentionPolicy/audit``).
    static func pruneAudit(placeholder: (Int) -> String) -> String {
        "DELETE FROM audit_log WHERE at_ms < \(placeholder(1))"
    }

    static func auditValues(_ entry: AuditEntry) -> [Value] {
        [
            .integer(entry.atMs), .text(entry.actor), .text(entry.role), .text(entry.action), .text(entry.target),
            .integer(Int64(entry.count)),
            .text(entry.outcome), .text(entry.requestID),
        ]
    }

    /// A dead-letter event for a record that exists already changes nothing: it is the same event again (a batch
    /// redelivered), or the record holds the copy a ledger took off the queue, which shows what a replay would publish.
    /// Anyone may publish to the events exchange; an event must never rewrite what an operator reads before replaying.
    static let deadLetterRecordKept = "ON CONFLICT (message_id, at_ms) DO NOTHING"

    /// Dead letters given their group per statement while migrating to version 3.
    static let backfillBatch = 1_000

    /// The failure groups of `query`, the most recently seen first, and the values to bind.
    /// Each queue once, by a walk through the jobs_by_queue index (one lookup per queue, not a scan of every job).
    static let distinctQueues = """
        WITH RECURSIVE names(queue) AS (
          SELECT MIN(queue) FROM jobs
          UNION ALL
          SELECT (SELECT MIN(jobs.queue) FROM jobs WHERE jobs.queue > names.queue) FROM names WHERE names.queue IS NOT NULL
        )
        SELECT queue FROM names WHERE queue IS NOT NULL LIMIT 1000
        """

    static func failureGroups(_ query: FailureGroupQuery, placeholder: @escaping (Int) -> String) -> (String, [Value]) {
        var conditions = Where(placeholder: placeholder)
        conditions.add(query.queue.map(Value.text)) { "queue = \($0)" }
        conditions.add(query.sinceMs.map(Value.integer)) { "at_ms >= \($0)" }
        conditions.add(query.untilMs.map(Value.integer)) { "at_ms < \($0)" }
        // Counted from the index (group_id, at_ms) alone; each listed group's details come from its latest row
        // (``failureGroupSample``).
        return (
            """
            SELECT group_id, COUNT(*) AS n, MIN(at_ms) AS first_at_ms, MAX(at_ms) AS last_at_ms
            FROM dead_letters \(conditions.sql)
            GROUP BY group_id ORDER BY last_at_ms DESC, group_id LIMIT \(query.limit)
            """, conditions.values
        )
    }

    /// A group's latest dead letter: its type, reason, masked error and message id (binds the group id).
    static func failureGroupSample(placeholder: String) -> String {
        """
        SELECT type, reason, fingerprint, message_id FROM dead_letters WHERE group_id = \(placeholder)
        ORDER BY at_ms DESC LIMIT 1
        """
    }

    /// The `WHERE` clause of a dead-letter search and its values.
    static func conditions(of query: DeadLetterQuery, placeholder: @escaping (Int) -> String) -> (String, [Value]) {
        var conditions = Where(placeholder: placeholder)
        conditions.add(query.groupID.map(Value.text)) { "group_id = \($0)" }
        conditions.add(query.queue.map(Value.text)) { "queue = \($0)" }
        conditions.add(query.sinceMs.map(Value.integer)) { "at_ms >= \($0)" }
        conditions.add(query.untilMs.map(Value.integer)) { "at_ms < \($0)" }
        conditions.after(query.after, timeColumn: "at_ms")
        return (conditions.sql, conditions.values)
    }

    /// A dead-letter search's rows (no headers, no body), newest first, one more than the page.
    static func deadLetters(_ query: DeadLetterQuery, placeholder: @escaping (Int) -> String) -> (String, [Value]) {
        let (conditions, values) = self.conditions(of: query, placeholder: placeholder)
        return (
            """
            SELECT message_id, at_ms, queue, type, reason, error, group_id, held, settled, settled_by FROM dead_letters \(conditions)
            ORDER BY at_ms DESC, message_id DESC LIMIT \(query.limit + 1)
            """, values
        )
    }

    /// Jobs deleted per transaction while pruning.
    static let prunedPerTransaction = 1_000

    /// The `WHERE` clause of `query` (empty when it has no condition) and its values, in order.
    static func conditions(of query: JobQuery, placeholder: @escaping (Int) -> String) -> (String, [Value]) {
        var conditions = Where(placeholder: placeholder)
        conditions.add(query.type.map(Value.text)) { "type = \($0)" }
        conditions.add(query.queue.map(Value.text)) { "queue = \($0)" }
        conditions.add(query.schedule.map(Value.text)) { "schedule = \($0)" }
        conditions.add(query.state.map { Value.text($0.rawValue) }) { "status = \($0)" }
        conditions.add(query.sinceMs.map(Value.integer)) { "last_event_at_ms >= \($0)" }
        conditions.add(query.untilMs.map(Value.integer)) { "last_event_at_ms < \($0)" }
        conditions.after(query.after, timeColumn: "last_event_at_ms")
        return (conditions.sql, conditions.values)
    }

    /// A `SELECT message_id …` of jobs to prune (the store adds a `LIMIT`); `keepingAtMost` when it selects the
    /// oldest jobs past a bound, to be repeated while more than that many jobs remain.
    struct PruneSelection {
        var sql: String
        var values: [Value]
        var keepingAtMost: Int?
    }

    static func pruneSelections(_ policy: RetentionPolicy, nowMs: Int64, placeholder: (Int) -> String)
        -> [PruneSelection]
    {
        let cutoffs = policy.cutoffs(nowMs: nowMs)
        // A purged job is kept as long as a dead-lettered one.
        let failed = "('\(JobState.deadLettered.rawValue)', '\(JobState.purged.rawValue)')"
        let finished =
            "('\(JobState.succeeded.rawValue)', '\(JobState.deadLettered.rawValue)', '\(JobState.purged.rawValue)')"
        var selections: [PruneSelection] = []
        for (cutoff, condition) in [
            (cutoffs.succeeded, "status = '\(JobState.succeeded.rawValue)'"),
            (cutoffs.deadLettered, "status IN \(failed)"),
            // A job due later is unfinished until a worker takes it: kept until its due time is past the cutoff too.
            (cutoffs.unfinished, "status NOT IN \(finished) AND (due_at_ms IS NULL OR due_at_ms < \(placeholder(1)))"),
        ] where cutoff != Int64.min {
            selections.append(
                PruneSelection(
                    sql: "SELECT message_id FROM jobs WHERE \(condition) AND last_event_at_ms < \(placeholder(1))",
                    values: [.integer(cutoff)]))
        }
        if let maxJobs = policy.maxJobs {
            selections.append(
                PruneSelection(
                    sql: "SELECT message_id FROM jobs ORDER BY last_event_at_ms, message_id", values: [],
                    keepingAtMost: max(0, maxJobs)))
        }
        return selections
    }
}
