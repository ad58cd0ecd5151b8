import Foundation
import Warren

/// Where a job stands, as the ledger recorded it. In JSON its raw value (`"dead_lettered"`).
public struct JobState: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    /// Published, not taken yet (or returned to its queue unhandled).
    public static let pending = JobState(rawValue: "pending")
    /// A worker runs its handler.
    public static let running = JobState(rawValue: "running")
    /// Failed; its next attempt is due at ``JobSummary/nextAttemptAtMs``.
    public static let retrying = JobState(rawValue: "retrying")
    public static let succeeded = JobState(rawValue: "succeeded")
    /// Failed for good (``JobSummary/reason``).
    public static let deadLettered = JobState(rawValue: "dead_lettered")
    /// A dead letter sent back to its work queue, not taken yet.
    public static let replayed = JobState(rawValue: "replayed")

    /// Every state, in the order a job usually goes through them.
    /// Its dead letter was deleted for good by an operator.
    public static let purged = JobState(rawValue: "purged")
    public static let all: [JobState] = [.pending, .running, .retrying, .succeeded, .deadLettered, .replayed, .purged]

    /// The state an event leaves a job in.
    static func after(_ event: WarrenEvent.Kind) -> JobState {
        switch event {
        case .started: .running
        case .ack: .succeeded
        case .retry: .retrying
        case .deadLetter: .deadLettered
        case .replayed: .replayed
        case .purged: .purged
        default: .pending  // published, requeued
        }
    }
}

/// One job (one message id) as a row of the ledger: its state and the last thing that happened to it.
public struct JobSummary: Sendable, Equatable, Codable {
    public var messageID: String
    public var type: String?
    /// The work queue of its latest attempt.
    public var queue: String
    public var state: JobState
    /// Attempts started so far (a replay starts again at 1; this keeps the highest).
    public var attempts: Int
    /// When its publisher's broker confirmed it, in milliseconds since 1970.
    public var publishedAtMs: Int64?
    /// When the latest of its events happened, in milliseconds since 1970: what searches sort and filter by.
    public var updatedAtMs: Int64
    /// When a retrying job's next attempt is due, in milliseconds since 1970.
    public var nextAttemptAtMs: Int64?
    /// The dead letter's reason (`retries-exhausted`, `rejected`, …).
    public var reason: String?
    public var lastError: String?
    public var traceID: String?
    /// For a message published due at a time: when it is due, in milliseconds since 1970 (it stays `pending` until a
    /// worker takes it).
    public var dueAtMs: Int64?
    /// For a run of a recurring job: its schedule's name, and the tick it runs for in milliseconds since 1970.
    public var schedule: String?
    public var scheduledForMs: Int64?

    public init(
        messageID: String, type: String?, queue: String, state: JobState, attempts: Int, publishedAtMs: Int64?,
        updatedAtMs: Int64, nextAttemptAtMs: Int64? = nil, reason: String? = nil, lastError: String? = nil,
        traceID: String? = nil, dueAtMs: Int64? = nil, schedule: String? = nil, scheduledForMs: Int64? = nil
    ) {
        self.dueAtMs = dueAtMs
        self.schedule = schedule
        self.scheduledForMs = scheduledForMs
        self.messageID = messageID
        self.type = type
        self.queue = queue
        self.state = state
        self.attempts = attempts
        self.publishedAtMs = publishedAtMs
        self.updatedAtMs = updatedAtMs
        self.nextAttemptAtMs = nextAttemptAtMs
        self.reason = reason
        self.lastError = lastError
        self.traceID = traceID
    }

    enum CodingKeys: String, CodingKey {
        case type, queue, attempts, reason
        case messageID = "message_id"
        case state = "status"
        case publishedAtMs = "published_at_ms"
        case updatedAtMs = "updated_at_ms"
        case nextAttemptAtMs = "next_attempt_at_ms"
        case lastError = "last_error"
        case traceID = "trace_id"
        case dueAtMs = "due_at_ms"
        case schedule
        case scheduledForMs = "scheduled_for_ms"
    }

    /// Absent values as `null`: one shape for every parser.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(messageID, forKey: .messageID)
        try container.encode(type, forKey: .type)
        try container.encode(queue, forKey: .queue)
        try container.encode(state, forKey: .state)
        try container.encode(attempts, forKey: .attempts)
        try container.encode(publishedAtMs, forKey: .publishedAtMs)
        try container.encode(updatedAtMs, forKey: .updatedAtMs)
        try container.encode(nextAttemptAtMs, forKey: .nextAttemptAtMs)
        try container.encode(reason, forKey: .reason)
        try container.encode(lastError, forKey: .lastError)
        try container.encode(traceID, forKey: .traceID)
        try container.encode(dueAtMs, forKey: .dueAtMs)
        try container.encode(schedule, forKey: .schedule)
        try container.encode(scheduledForMs, forKey: .scheduledForMs)
    }
}

/// What became of one job: its row (``JobSummary``, whose fields read through: `status.state`) and its attempts.
@dynamicMemberLookup
public struct JobStatus: Sendable, Equatable, Codable {
    public typealias State = JobState

    /// One attempt: when it started and how it ended.
    public struct Attempt: Sendable, Equatable, Codable {
        public var attempt: Int
        public var startedAtMs: Int64?
        public var endedAtMs: Int64?
        /// `ack`, `retry`, `dead-letter`, `requeued`; `nil` while it runs.
        public var outcome: String?
        /// The time in the queue before this attempt, in milliseconds; `nil` for a message without Warren's published-at
        /// header, which has ``queueWaitApproxS`` instead.
        public var queueWaitMs: Int64?
        /// A foreign message's wait since its AMQP timestamp, in whole seconds: approximate, and to be shown so.
        public var queueWaitApproxS: Int64?
        public var durationMs: Int64?
        public var error: String?
        public var host: String?

        enum CodingKeys: String, CodingKey {
            case attempt, outcome, error, host
            case startedAtMs = "started_at_ms"
            case endedAtMs = "ended_at_ms"
            case queueWaitMs = "queue_wait_ms"
            case queueWaitApproxS = "queue_wait_approx_s"
            case durationMs = "duration_ms"
        }
    }

    public var summary: JobSummary
    /// Every attempt, oldest first.
    public var timeline: [Attempt]

    public init(summary: JobSummary, timeline: [Attempt]) {
        self.summary = summary
        self.timeline = timeline
    }

    public subscript<Value>(dynamicMember keyPath: WritableKeyPath<JobSummary, Value>) -> Value {
        get { summary[keyPath: keyPath] }
        set { summary[keyPath: keyPath] = newValue }
    }

    enum CodingKeys: String, CodingKey { case timeline }

    /// The summary's fields and `timeline`, side by side in one object.
    public init(from decoder: any Decoder) throws {
        summary = try JobSummary(from: decoder)
        timeline = try decoder.container(keyedBy: CodingKeys.self).decode([Attempt].self, forKey: .timeline)
    }

    public func encode(to encoder: any Encoder) throws {
        try summary.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(timeline, forKey: .timeline)
    }

    /// The attempts of a job, from its events in the order they happened (`published`, `replayed` and `purged` are not
    /// attempts).
    static func timeline(of events: [WarrenEvent]) -> [Attempt] {
        var attempts: [Attempt] = []
        for event in events where ![.published, .replayed, .purged].contains(event.event) {
            let number = event.attempt ?? 1
            if event.event == .started || attempts.last.map({ $0.attempt != number || $0.outcome != nil }) ?? true {
                attempts.append(Attempt(attempt: number))
            }
            var current = attempts[attempts.count - 1]
            if event.event == .started {
                current.startedAtMs = event.atMs
                current.queueWaitMs = event.queueWaitMs
                current.queueWaitApproxS = event.queueWaitApproxS
                current.host = event.host
            } else {
                current.startedAtMs = current.startedAtMs ?? event.startedAtMs
                current.endedAtMs = event.atMs
                current.outcome = event.event.rawValue
                current.durationMs = event.durationMs
                current.error = event.error
                current.host = current.host ?? event.host
                current.queueWaitMs = current.queueWaitMs ?? event.queueWaitMs
                current.queueWaitApproxS = current.queueWaitApproxS ?? event.queueWaitApproxS
            }
            attempts[attempts.count - 1] = current
        }
        return attempts
    }
}
