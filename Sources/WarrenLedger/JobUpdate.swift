import Warren

/// The ledger's one rule for a job's row, shared by every store: a job follows its latest event by time, a settlement
/// wins over its start in the same millisecond (the two may arrive in either order), and `published` only fills in
/// the publish time (a publisher's confirm may come back after a worker started the job). A batch's events are
/// folded into one update per job here; the store merges each update with the stored row by the same comparison of
/// (`updated_at_ms`, `updated_phase`).
/// What a batch does to one job's row: its events folded, in order.
struct JobUpdate: Equatable {
    var messageID: String
    var type: String?
    var queue: String
    var status: String
    var attempts: Int
    var publishedAtMs: Int64?
    /// 0 when the batch only published the job: then it never wins over a stored row.
    var updatedAtMs: Int64
    var updatedPhase: Int
    /// The latest time of any of its events, `published` included: what searches and retention go by.
    var lastEventAtMs: Int64
    var nextAttemptAtMs: Int64?
    var reason: String?
    var lastError: String?
    var traceID: String?
    /// When a message published due at a time is due, and the recurring job and tick a run is for: the first event
    /// that says wins (they never change for one message id).
    var dueAtMs: Int64?
    var schedule: String?
    var scheduledForMs: Int64?

    /// Within one millisecond: a start before the settlement of its attempt.
    static func phase(of event: WarrenEvent.Kind) -> Int {
        switch event {
        case .published: 0
        case .started: 1
        default: 2
        }
    }

    /// One update per job of `events`, in the order each job first appears.
    static func fold(_ events: some Sequence<WarrenEvent>) -> [JobUpdate] {
        var order: [String] = []
        var updates: [String: JobUpdate] = [:]
        for event in events {
            guard let id = event.messageID else { continue }
            var update =
                updates[id]
                ?? {
                    order.append(id)
                    return JobUpdate(
                        messageID: id, type: nil, queue: event.queue, status: JobState.pending.rawValue, attempts: 0,
                        publishedAtMs: nil, updatedAtMs: 0, updatedPhase: 0, lastEventAtMs: event.atMs)
                }()
            update.type = update.type ?? event.type
            update.traceID = update.traceID ?? event.traceID
            update.dueAtMs = update.dueAtMs ?? event.dueAtMs
            if update.schedule == nil, let schedule = event.schedule {
                (update.schedule, update.scheduledForMs) = (schedule, event.scheduledForMs)
            }
            if let error = event.error { update.lastError = error }
            update.lastEventAtMs = max(update.lastEventAtMs, event.atMs)
            if event.event == .published {
                update.publishedAtMs = min(update.publishedAtMs ?? event.atMs, event.atMs)
                if update.updatedAtMs == 0 { update.queue = event.queue }
            } else {
                if event.event != .replayed && event.event != .purged {
                    update.attempts = max(update.attempts, event.attempt ?? 1)
                }
                let eventPhase = Self.phase(of: event.event)
                if (event.atMs, eventPhase) >= (update.updatedAtMs, update.updatedPhase) {
                    update.status = JobState.after(event.event).rawValue
                    update.nextAttemptAtMs = event.event == .retry ? event.nextAttemptAtMs : nil
                    update.reason = event.reason
                    update.queue = event.queue
                    update.updatedAtMs = event.atMs
                    update.updatedPhase = eventPhase
                }
            }
            updates[id] = update
        }
        return order.map { updates[$0]! }
    }
}
