import Foundation
@_spi(WarrenTransport) import Warren
import WarrenAMQP

/// A dead letter taken off its dead-letter queue by a ledger (``DeadLetterIntake``), to be committed to the store
/// before it is acked: the whole message, and the `dead-letter` event it amounts to.
public struct IngestedDeadLetter: Sendable {
    /// The `dead-letter` event: the same message id, time and attempt as the one the worker reported (the
    /// copy's `x-warren-last-failure-at` is that event's time), so the two are one record in the store, whichever
    /// comes first.
    public var event: WarrenEvent
    public var message: StoredMessage

    /// Bytes of the body kept for display in the event (the whole message is kept in ``message``).
    public static let displayedBodyLimit = 64 * 1024

    /// Whether the copy carries no time of its failure (neither Warren's nor RabbitMQ's `x-death`): it is keyed by
    /// when it was received, so the store recognises a redelivery of it by its content instead
    /// (``LedgerStore/take(_:)``).
    public var keyedByReceipt: Bool

    /// Reads what the worker wrote in the copy's headers (``DeadLetter``).
    /// - Parameters:
    ///   - queue: the work queue whose dead-letter queue held it (when the copy does not name its queue).
    ///   - receivedAtMs: its time when the copy carries none (a foreign producer's message, published straight to a
    ///     dead-letter queue).
    public init(message: StoredMessage, queue: String, receivedAtMs: Int64) {
        let letter = DeadLetter(body: message.body, properties: message.properties)
        // What the copy says of its failure, so that a copy redelivered after its commit is the same record: Warren's
        // failure time, else the time RabbitMQ dead-lettered it (TTL, a quorum queue's delivery limit, a reject).
        let death = Self.death(message.properties.headers)
        let carried =
            UnixMilliseconds.from(message.properties.headers?[WarrenHeader.lastFailureAt]?.int64Value) ?? death?.atMs
        let atMs = carried ?? receivedAtMs
        var event = WarrenEvent(
            event: .deadLetter, messageID: letter.messageID ?? Self.syntheticID(of: message), type: letter.messageType,
            queue: letter.originalQueue ?? queue, attempt: letter.attempts, atMs: atMs, error: letter.reason?.detail,
            reason: letter.reason?.kind.rawValue ?? death?.reason ?? "unknown", host: letter.host,
            correlationID: letter.properties.correlationID)
        event.attach(
            DeadLetterContent(body: message.body, headers: message.properties.headers ?? [:]),
            bodyLimit: Self.displayedBodyLimit)
        self.event = event
        self.message = message
        keyedByReceipt = carried == nil
    }

    /// When and why RabbitMQ last dead-lettered the message: the newest plausible `time` (whole seconds) of its
    /// `x-death` entries, in milliseconds, and that entry's `reason` (`expired`, `rejected`, `maxlen`, `delivery_limit`);
    /// `nil` when it carries none.
    static func death(_ headers: AMQPTable?) -> (atMs: Int64, reason: String?)? {
        guard case .array(let deaths)? = headers?["x-death"] else { return nil }
        let entries = deaths.prefix(100).compactMap { death -> (seconds: UInt64, reason: String?)? in
            guard case .table(let entry) = death, case .timestamp(let time)? = entry["time"],
                time <= UInt64(UnixMilliseconds.plausible.upperBound / 1000)
            else { return nil }
            return (time, entry["reason"]?.stringValue.map { String($0.prefix(64)) })
        }
        guard let newest = entries.max(by: { $0.seconds < $1.seconds }) else { return nil }
        return (Int64(newest.seconds) * 1000, newest.reason)
    }

    /// An id for a message that came without one (not published by Warren): the same for the same content, so a
    /// redelivered copy is the same record.
    private static func syntheticID(of message: StoredMessage) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in message.body + Array(((try? message.encodedProperties()) ?? "").utf8) {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return "no-id-" + String(hash, radix: 16)
    }

    /// The message id the store keys it by.
    public var messageID: String { event.messageID ?? "" }
}

/// A dead letter the store holds (taken off its queue, neither replayed nor purged yet): what a replay publishes.
public struct HeldDeadLetter: Sendable, Equatable {
    public var messageID: String
    /// When it was dead-lettered, in milliseconds since 1970: with ``messageID``, its key.
    public var atMs: Int64
    /// The work queue it failed on.
    public var queue: String
    public var message: StoredMessage

    public init(messageID: String, atMs: Int64, queue: String, message: StoredMessage) {
        self.messageID = messageID
        self.atMs = atMs
        self.queue = queue
        self.message = message
    }

    /// The message as ``DeadLetterReplay`` takes it.
    public var letter: DeadLetter { DeadLetter(body: message.body, properties: message.properties) }

    var cursor: LedgerCursor { LedgerCursor(atMs: atMs, messageID: messageID) }
}

/// Which dead letters an operation applies to: all conditions together; none selects every dead letter held.
public struct DeadLetterFilter: Sendable, Equatable, Codable {
    /// One job's (its dead letters: more than one when it was replayed and failed again).
    public var messageID: String?
    /// One failure group's (``FailureGroup/groupID``).
    public var groupID: String?
    /// One work queue's.
    public var queue: String?
    /// Dead-lettered at or after this time (milliseconds since 1970).
    public var sinceMs: Int64?
    /// Dead-lettered before this time (milliseconds since 1970).
    public var untilMs: Int64?

    public init(
        messageID: String? = nil, groupID: String? = nil, queue: String? = nil, sinceMs: Int64? = nil,
        untilMs: Int64? = nil
    ) {
        self.messageID = messageID
        self.groupID = groupID
        self.queue = queue
        self.sinceMs = sinceMs
        self.untilMs = untilMs
    }

    enum CodingKeys: String, CodingKey {
        case queue
        case messageID = "message_id"
        case groupID = "group_id"
        case sinceMs = "since_ms"
        case untilMs = "until_ms"
    }

    /// The filter as a person reads it in the audit log: `group=… queue=…`, or `everything`.
    public var summary: String {
        let parts = [
            messageID.map { "message_id=\($0)" }, groupID.map { "group=\($0)" }, queue.map { "queue=\($0)" },
            sinceMs.map { "since_ms=\($0)" }, untilMs.map { "until_ms=\($0)" },
        ].compactMap { $0 }
        return parts.isEmpty ? "everything" : parts.joined(separator: " ")
    }
}
