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

    /// A logger carrying the job's metadata (`message_id`, `type`, `queue`, `attempt`). Built when asked for, so a
    /// handler that does not log costs nothing.
    public var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "message_id"] = "\(messageID ?? "")"
        logger[metadataKey: "type"] = "\(messageType)"
        logger[metadataKey: "queue"] = "\(queue)"
        logger[metadataKey: "attempt"] = "\(attempt)"
        return logger
    }
}

/// Raised by a registration when a body cannot be decoded into its type.
struct UndecodableBody: Error {
    var detail: String
}
