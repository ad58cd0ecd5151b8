import Foundation
import WarrenAMQP

/// A message in a work queue's dead letters: why it was parked, where it came from, after how many attempts.
///
/// The one owner of Warren's dead-letter headers, in both directions: a worker writes them when it parks a message,
/// and everything that shows dead letters (the `warren dlx` commands, the in-memory transport's inspection, a
/// dashboard) reads them with ``init(body:properties:)``; ``replayProperties(now:)`` prepares a dead letter to go back
/// to work. Headers a newer or a foreign writer put there are kept in ``properties`` as they are.
public struct DeadLetter: Sendable {
    public var body: [UInt8]
    /// The message's properties, every header included.
    public var properties: AMQPProperties

    /// Why the message was parked; `nil` for a message in the dead letters without Warren's reason header (put there
    /// by something else).
    public var reason: DeadLetterReason?
    /// The Swift type of the last error (`x-warren-error-type`), when a handler failed.
    public var errorType: String?
    /// How many attempts were made.
    public var attempts: Int?
    /// Where the message was first published to, and the work queue it failed on.
    public var originalExchange: String?
    public var originalRoutingKey: String?
    public var originalQueue: String?
    /// When the first and the last attempt failed.
    public var firstFailedAt: Date?
    public var lastFailedAt: Date?
    /// The host the last attempt ran on.
    public var host: String?

    public var messageID: String? { properties.messageID }
    /// The message type: the AMQP `type`, or Warren's type header.
    public var messageType: String? { properties.warrenMessageType }

    /// Reads a dead letter's headers. Missing or malformed headers leave their fields `nil`: reading never fails.
    public init(body: [UInt8], properties: AMQPProperties) {
        self.body = body
        self.properties = properties
        let headers = properties.headers ?? [:]
        if let kind = headers[WarrenHeader.reason]?.stringValue {
            reason = DeadLetterReason(
                kind: DeadLetterReason.Kind(rawValue: kind),
                detail: headers[WarrenHeader.errorMessage]?.stringValue ?? "")
        }
        errorType = headers[WarrenHeader.errorType]?.stringValue
        attempts = headers[WarrenHeader.attempts]?.int64Value.map { Int(clamping: $0) }
        originalExchange = headers[WarrenHeader.originalExchange]?.stringValue
        originalRoutingKey = headers[WarrenHeader.originalRoutingKey]?.stringValue
        originalQueue = headers[WarrenHeader.originalQueue]?.stringValue
        firstFailedAt = UnixMilliseconds.from(headers[WarrenHeader.firstFailureAt]?.int64Value).map(
            Self.date(milliseconds:))
        lastFailedAt = UnixMilliseconds.from(headers[WarrenHeader.lastFailureAt]?.int64Value).map(
            Self.date(milliseconds:))
        host = headers[WarrenHeader.host]?.stringValue
    }

    /// The headers of the dead-letter copy of a message that failed on `queue`: `headers` (the message's own, with
    /// the failure already recorded) plus the reason and where the message came from.
    static func headers(
        _ headers: AMQPTable, reason: DeadLetterReason, exchange: String, routingKey: String, queue: String,
        attempts: Int,
        host: String
    ) -> AMQPTable {
        var headers = headers
        headers[WarrenHeader.reason] = .string(reason.kind.rawValue)
        headers[WarrenHeader.errorMessage] = .string(String(reason.detail.prefix(DeadLetterReason.longestDetail)))
        headers[WarrenHeader.originalExchange] = .string(exchange)
        headers[WarrenHeader.originalRoutingKey] = .string(routingKey)
        headers[WarrenHeader.originalQueue] = .string(queue)
        headers[WarrenHeader.attempts] = .int64(Int64(attempts))
        headers[WarrenHeader.host] = .string(host)
        return headers
    }

    /// The queue a replay sends the message to: the one it failed on, else `fallback`.
    public func replayQueue(fallback: String) -> String { originalQueue ?? fallback }

    /// The properties to send the message back to work with: Warren's attempt and failure bookkeeping and RabbitMQ's
    /// `x-death` headers dropped, so it starts again at attempt 1; the application's headers, the message type and
    /// the first enqueue time kept. The publish time starts again at `now` (the time it waited as a dead letter is
    /// not queue wait); the original one moves to ``WarrenHeader/originalPublishedAt``.
    public func replayProperties(now: Date = Date()) -> AMQPProperties {
        var headers = properties.headers ?? [:]
        let published = headers[WarrenHeader.originalPublishedAt] ?? headers[WarrenHeader.publishedAt]
        for key in headers.keys where Self.isBookkeeping(key) { headers[key] = nil }
        if let published { headers[WarrenHeader.originalPublishedAt] = published }
        headers[WarrenHeader.publishedAt] = .int64(Int64((now.timeIntervalSince1970 * 1000).rounded()))
        var replayed = properties
        replayed.headers = headers
        return replayed
    }

    private static func isBookkeeping(_ key: String) -> Bool {
        if key == "x-death" || key.hasPrefix("x-first-death") || key.hasPrefix("x-last-death") { return true }
        guard key.hasPrefix("x-warren-") else { return false }
        return key != WarrenHeader.messageType && key != WarrenHeader.firstEnqueuedAt
            && key != WarrenHeader.originalPublishedAt
    }

    private static func date(milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }
}
