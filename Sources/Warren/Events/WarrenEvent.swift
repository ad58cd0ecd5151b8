import Foundation
import WarrenAMQP

/// One thing that happened to a job, as workers and publishers report it to the topic exchange `warren.events`
/// (``WarrenEventPublisher``) for a ledger to record. Schema 1, every field in snake_case on the wire (`docs/events.md`).
public struct WarrenEvent: Codable, Sendable, Equatable {
    /// What happened.
    public struct Kind: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A publisher's broker confirmed the message.
        public static let published = Kind(rawValue: "published")
        /// A worker took the delivery and runs its handler.
        public static let started = Kind(rawValue: "started")
        /// Handled and acked.
        public static let ack = Kind(rawValue: "ack")
        /// Failed; its retry copy is in a delay queue (``WarrenEvent/nextAttemptAtMs``).
        public static let retry = Kind(rawValue: "retry")
        /// Failed for good; its copy is in the dead letters (``WarrenEvent/reason``, headers and body).
        public static let deadLetter = Kind(rawValue: "dead-letter")
        /// Returned to its queue unhandled (a shutdown, a lost channel, a redelivery re-enqueued with its count).
        public static let requeued = Kind(rawValue: "requeued")
        /// A dead letter was sent back to its work queue (`warren dlx replay`); its attempts start again at 1.
        public static let replayed = Kind(rawValue: "replayed")
        /// A dead letter was deleted for good by an operator (from the dashboard).
        public static let purged = Kind(rawValue: "purged")
    }

    /// The wire schema's version; 1.
    public var schema: Int
    public var event: Kind
    /// The AMQP `message_id`: the job's identity across attempts.
    public var messageID: String?
    /// The message type (AMQP `type`).
    public var type: String?
    /// The work queue (for `published`, the queue or routing key published to).
    public var queue: String
    /// 1-based attempt; absent for `published`.
    public var attempt: Int?
    /// When it happened, in milliseconds since 1970.
    public var atMs: Int64
    /// How long the message waited in its queue before this attempt, in milliseconds.
    public var queueWaitMs: Int64?
    /// For a message without Warren's `x-warren-published-at` (a foreign publisher's), instead of ``queueWaitMs``: the
    /// wait since its AMQP timestamp, in whole seconds — approximate (the timestamp has no milliseconds), and shown so.
    public var queueWaitApproxS: Int64?
    /// Handling and settling time, in milliseconds (settlements only).
    public var durationMs: Int64?
    /// The failure, for `retry` and `dead-letter`.
    public var error: String?
    /// The dead letter's reason (`retries-exhausted`, `rejected`, …).
    public var reason: String?
    /// When the retry copy comes back, in milliseconds since 1970.
    public var nextAttemptAtMs: Int64?
    /// The worker's host name.
    public var host: String?
    /// The W3C trace id, when the message carried one.
    public var traceID: String?
    public var correlationID: String?
    /// A dead letter's headers, as text.
    public var headers: [String: String]?
    /// A dead letter's body, up to ``EventOptions/deadLetterBodyLimit`` bytes: UTF-8 text, or base64 when
    /// ``bodyEncoding`` says so.
    public var body: String?
    /// `utf8` or `base64`.
    public var bodyEncoding: String?
    /// Whether ``body`` was cut at the limit.
    public var bodyTruncated: Bool?
    /// On a settlement: when its attempt started, in milliseconds since 1970, when the attempt's `started` event was
    /// folded into it (it settled before the `started` event was sent, within one flush interval): one event instead
    /// of two for a short job.
    public var startedAtMs: Int64?
    /// For a message published due at a time (``Destination/due(queue:at:)``): when it is due, in milliseconds since
    /// 1970 (on `published`, from its `x-warren-due-at` header).
    public var dueAtMs: Int64?
    /// For a run of a recurring job: the schedule's name and the tick it runs for, in milliseconds since 1970 (from its
    /// ``ScheduleHeader`` headers).
    public var schedule: String?
    public var scheduledForMs: Int64?

    public init(
        event: Kind, messageID: String?, type: String?, queue: String, attempt: Int? = nil, atMs: Int64,
        queueWaitMs: Int64? = nil, durationMs: Int64? = nil, error: String? = nil, reason: String? = nil,
        nextAttemptAtMs: Int64? = nil, host: String? = nil, traceID: String? = nil, correlationID: String? = nil
    ) {
        self.schema = 1
        self.event = event
        self.messageID = messageID
        self.type = type
        self.queue = queue
        self.attempt = attempt
        self.atMs = atMs
        self.queueWaitMs = queueWaitMs
        self.durationMs = durationMs
        self.error = error
        self.reason = reason
        self.nextAttemptAtMs = nextAttemptAtMs
        self.host = host
        self.traceID = traceID
        self.correlationID = correlationID
    }

    enum CodingKeys: String, CodingKey {
        case schema, event, type, queue, attempt, error, reason, host, headers, body
        case messageID = "message_id"
        case atMs = "at_ms"
        case queueWaitMs = "queue_wait_ms"
        case queueWaitApproxS = "queue_wait_approx_s"
        case durationMs = "duration_ms"
        case nextAttemptAtMs = "next_attempt_at_ms"
        case traceID = "trace_id"
        case correlationID = "correlation_id"
        case bodyEncoding = "body_encoding"
        case bodyTruncated = "body_truncated"
        case startedAtMs = "started_at_ms"
        case dueAtMs = "due_at_ms"
        case schedule
        case scheduledForMs = "scheduled_for_ms"
    }

    /// Fills in ``dueAtMs``, ``schedule`` and ``scheduledForMs`` from a message's headers, where it carries them (values
    /// no clock gives are left out).
    mutating func describeTiming(from headers: AMQPTable?) {
        guard let headers else { return }
        dueAtMs = UnixMilliseconds.from(headers[WarrenHeader.dueAt]?.int64Value)
        if let run = ScheduledRun(headers: headers) {
            schedule = run.name
            scheduledForMs = UnixMilliseconds.from(run.scheduledFor)
        }
    }

    /// Decodes a batch as a ledger receives it: the body of one `warren.events` message, a JSON array of events.
    /// - Throws: `DecodingError` for a body that is not such an array, or an event of another schema.
    public static func decodeBatch(_ body: [UInt8]) throws -> [WarrenEvent] {
        let events = try JSONDecoder().decode([WarrenEvent].self, from: Data(body))
        if let other = events.first(where: { $0.schema != 1 }) {
            throw DecodingError.dataCorrupted(
                .init(codingPath: [], debugDescription: "unknown event schema \(other.schema)"))
        }
        return events
    }

    /// The body of one `warren.events` message holding `events`: a JSON array, written without Foundation's encoder
    /// (events are written for every delivery).
    public static func encodeBatch(_ events: some Collection<WarrenEvent>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(events.count * 256)
        out.append(UInt8(ascii: "["))
        for (index, event) in events.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            event.write(into: &out)
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    private func write(into out: inout [UInt8]) {
        var first = true
        func key(_ name: String) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSONText.quoted(name, into: &out)
            out.append(UInt8(ascii: ":"))
        }
        func string(_ name: String, _ value: String?) {
            guard let value else { return }
            key(name)
            JSONText.quoted(value, into: &out)
        }
        func number(_ name: String, _ value: Int64?) {
            guard let value else { return }
            key(name)
            out.append(contentsOf: String(value).utf8)
        }
        out.append(UInt8(ascii: "{"))
        number("schema", Int64(schema))
        string("event", event.rawValue)
        string("message_id", messageID)
        string("type", type)
        string("queue", queue)
        number("attempt", attempt.map(Int64.init))
        number("at_ms", atMs)
        number("started_at_ms", startedAtMs)
        number("queue_wait_ms", queueWaitMs)
        number("queue_wait_approx_s", queueWaitApproxS)
        number("duration_ms", durationMs)
        string("error", error)
        string("reason", reason)
        number("next_attempt_at_ms", nextAttemptAtMs)
        string("host", host)
        string("trace_id", traceID)
        string("correlation_id", correlationID)
        number("due_at_ms", dueAtMs)
        string("schedule", schedule)
        number("scheduled_for_ms", scheduledForMs)
        if let headers {
            key("headers")
            out.append(UInt8(ascii: "{"))
            for (index, name) in headers.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONText.quoted(name, into: &out)
                out.append(UInt8(ascii: ":"))
                JSONText.quoted(headers[name]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        string("body", body)
        string("body_encoding", bodyEncoding)
        if let bodyTruncated {
            key("body_truncated")
            out.append(contentsOf: (bodyTruncated ? "true" : "false").utf8)
        }
        out.append(UInt8(ascii: "}"))
    }
}

/// JSON string literals, written byte by byte.
enum JSONText {
    static func quoted(_ string: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [
                    UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)],
                    hex[Int(byte & 0xF)],
                ])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
