import Foundation
import Logging
import WarrenAMQP

/// What a handler knows about the delivery it handles.
public struct MessageContext: Sendable {
    /// The AMQP `message_id`, when the publisher set one.
    public var messageID: String?
    public var correlationID: String?
    /// The wire type (the AMQP `type` property).
    public var messageType: String
    /// The message's headers, Warren's own `x-warren-*` headers included.
    public var headers: AMQPTable
    /// Which attempt this is, 1-based: 1 for the first delivery, 2 for the first retry, …
    public var attempt: Int
    /// When the message was first enqueued, when known (from Warren's header or the AMQP timestamp).
    public var firstEnqueuedAt: Date?
    /// Whether the broker delivered this message before without it being settled (a crash or lost connection).
    public var redelivered: Bool
    /// The work queue it came from.
    public var queue: String
    /// The worker's logger, without the job's metadata (see ``logger``).
    public var baseLogger: Logger
    /// Publishes through the worker's transport; see ``publish(_:to:headers:)``.
    public var publisher: WarrenPublisher?
    /// The W3C trace id of the delivery's trace (of its `process` span when a tracer makes spans, else of a valid
    /// incoming `traceparent`); `nil` without one.
    public var traceID: String?
    /// The W3C span id of the delivery's `process` span, when a tracer that propagates W3C context makes spans.
    public var spanID: String?

    /// A context as a worker makes one for each delivery; for calling a handler directly, in a unit test.
    /// - Parameter publisher: what ``publish(_:to:headers:)`` publishes through; without one it throws
    ///   ``WarrenError/Code/noPublisher``.
    public init(
        messageID: String? = nil, correlationID: String? = nil, messageType: String, headers: AMQPTable = [:],
        attempt: Int = 1, firstEnqueuedAt: Date? = nil, redelivered: Bool = false, queue: String,
        baseLogger: Logger = Logger(label: "warren"), publisher: WarrenPublisher? = nil, traceID: String? = nil,
        spanID: String? = nil
    ) {
        self.messageID = messageID
        self.correlationID = correlationID
        self.messageType = messageType
        self.headers = headers
        self.attempt = attempt
        self.firstEnqueuedAt = firstEnqueuedAt
        self.redelivered = redelivered
        self.queue = queue
        self.baseLogger = baseLogger
        self.publisher = publisher
        self.traceID = traceID
        self.spanID = spanID
    }

    /// A logger carrying the job's metadata (`message_id`, `type`, `queue`, `attempt`, and `trace_id` and `span_id`
    /// when known). Built when asked for, so a handler that does not log costs nothing.
    public var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "message_id"] = "\(messageID ?? "")"
        logger[metadataKey: "type"] = "\(messageType)"
        logger[metadataKey: "queue"] = "\(queue)"
        logger[metadataKey: "attempt"] = "\(attempt)"
        if let traceID { logger[metadataKey: "trace_id"] = "\(traceID)" }
        if let spanID { logger[metadataKey: "span_id"] = "\(spanID)" }
        if let schedule {
            for (key, value) in schedule.logMetadata { logger[metadataKey: key] = value }
        }
        return logger
    }

    /// The recurring job this message is a run of, when a ``Scheduler`` published it (read from its headers).
    public var schedule: ScheduledRun? { ScheduledRun(headers: headers) }
}

/// A run of a recurring job, as its message's headers say.
public struct ScheduledRun: Sendable, Hashable {
    /// The schedule's name.
    public var name: String
    /// When the run was due.
    public var scheduledFor: Date
    /// Whether an operator started it by hand.
    public var isManual: Bool

    /// Reads ``ScheduleHeader/schedule`` and ``ScheduleHeader/scheduledFor``; `nil` when either is missing or not of
    /// its type (a string, an integer of milliseconds).
    public init?(headers: AMQPTable) {
        guard let name = headers[ScheduleHeader.schedule]?.stringValue, !name.isEmpty,
            let milliseconds = headers[ScheduleHeader.scheduledFor]?.int64Value,
            (0...253_402_300_799_999).contains(milliseconds)  // 1970 to the end of year 9999: any producer may write it
        else { return nil }
        self.name = name
        self.scheduledFor = Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000)
        self.isManual = headers[ScheduleHeader.manual].map { $0 == .bool(true) } ?? false
    }

    /// What a log line about the run carries: `schedule`, `scheduled_for` (ISO 8601), and `manual` for a run started
    /// by hand.
    var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            "schedule": "\(name)", "scheduled_for": "\(scheduledFor.formatted(.iso8601))",
        ]
        if isManual { metadata["manual"] = .stringConvertible(true) }
        return metadata
    }
}

/// Raised by a registration when a body cannot be decoded into its type.
struct UndecodableBody: Error {
    var detail: String

    init(decoding type: Any.Type, from contentType: String, _ error: any Error) {
        detail = "cannot decode \(type) from \(contentType): \(Self.summary(of: error))"
    }

    /// A short description of a decoding error (the full `DecodingError` dump is unwieldy in a header).
    private static func summary(of error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context):
            return "data corrupted: \(context.debugDescription)"
        case DecodingError.keyNotFound(let key, _):
            return "missing key '\(key.stringValue)'"
        case DecodingError.typeMismatch(let type, let context):
            return "type mismatch for \(type) at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.valueNotFound(let type, let context):
            return "missing \(type) at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        default:
            return String(describing: error)
        }
    }
}
