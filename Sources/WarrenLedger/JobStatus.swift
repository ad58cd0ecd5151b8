import Warren

/// What became of one job (one message id), as the ledger recorded it.
public struct JobStatus: Sendable, Equatable, Encodable {
    /// Where a job stands.
    public struct State: RawRepresentable, Hashable, Sendable, Encodable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }

        /// Published, not taken yet (or returned to its queue unhandled).
        public static let pending = State(rawValue: "pending")
        /// A worker runs its handler.
        public static let running = State(rawValue: "running")
        /// Failed; its next attempt is due at ``JobStatus/nextAttemptAtMs``.
        public static let retrying = State(rawValue: "retrying")
        public static let succeeded = State(rawValue: "succeeded")
        /// Failed for good (``JobStatus/reason``).
        public static let deadLettered = State(rawValue: "dead_lettered")
    }

    /// One attempt: when it started and how it ended.
    public struct Attempt: Sendable, Equatable, Encodable {
        public var attempt: Int
        public var startedAtMs: Int64?
        public var endedAtMs: Int64?
        /// `ack`, `retry`, `dead-letter`, `requeued`; `nil` while it runs.
        public var outcome: String?
        public var queueWaitMs: Int64?
        public var durationMs: Int64?
        public var error: String?
        public var host: String?

        enum CodingKeys: String, CodingKey {
            case attempt, outcome, error, host
            case startedAtMs = "started_at_ms"
            case endedAtMs = "ended_at_ms"
            case queueWaitMs = "queue_wait_ms"
            case durationMs = "duration_ms"
        }
    }

    public var messageID: String
    public var type: String?
    public var queue: String
    public var state: State
    /// Attempts started so far.
    public var attempts: Int
    public var publishedAtMs: Int64?
    public var updatedAtMs: Int64
    public var nextAttemptAtMs: Int64?
    /// The dead letter's reason.
    public var reason: String?
    public var lastError: String?
    public var traceID: String?
    /// Every attempt, oldest first.
    public var timeline: [Attempt]

    enum CodingKeys: String, CodingKey {
        case type, queue, attempts, reason, timeline
        case messageID = "message_id"
        case state = "status"
        case publishedAtMs = "published_at_ms"
        case updatedAtMs = "updated_at_ms"
        case nextAttemptAtMs = "next_attempt_at_ms"
        case lastError = "last_error"
        case traceID = "trace_id"
    }

    /// The state an event leaves a job in.
    static func state(after event: WarrenEvent.Kind) -> State {
        switch event {
        case .started: .running
        case .ack: .succeeded
        case .retry: .retrying
        case .deadLetter: .deadLettered
        default: .pending  // published, requeued
        }
    }

    /// The attempts of a job, from its events in the order they happened.
    static func timeline(of events: [WarrenEvent]) -> [Attempt] {
        var attempts: [Attempt] = []
        for event in events where event.event != .published {
            let number = event.attempt ?? 1
            if event.event == .started || attempts.last.map({ $0.attempt != number || $0.outcome != nil }) ?? true {
                attempts.append(Attempt(attempt: number))
            }
            var current = attempts[attempts.count - 1]
            if event.event == .started {
                current.startedAtMs = event.atMs
                current.queueWaitMs = event.queueWaitMs
                current.host = event.host
            } else {
                current.endedAtMs = event.atMs
                current.outcome = event.event.rawValue
                current.durationMs = event.durationMs
                current.error = event.error
                current.host = current.host ?? event.host
                current.queueWaitMs = current.queueWaitMs ?? event.queueWaitMs
            }
            attempts[attempts.count - 1] = current
        }
        return attempts
    }
}
