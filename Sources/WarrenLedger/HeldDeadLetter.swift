import Foundation
import Warren

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

    /// Reads what the worker wrote in the copy's headers (``DeadLetter``).
    /// - Parameters:
    ///   - queue: the work queue whose dead-letter queue held it (when the copy does not name its queue).
    ///   - receivedAtMs: its time when the copy carries no failure time (not written by a Warren worker).
    public init(message: StoredMessage, queue: String, receivedAtMs: Int64) {
        let letter = DeadLetter(body: message.body, properties: message.properties)
        let atMs = letter.lastFailedAt.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) } ?? receivedAtMs
        var event = WarrenEvent(
            event: .deadLetter, messageID: letter.messageID ?? Self.syntheticID(of: message, atMs: atMs), type: letter.messageType,
            queue: letter.originalQueue ?? queue, attempt: letter.attempts, atMs: atMs, error: letter.reason?.detail,
            reason: letter.reason?.kind.rawValue ?? "unknown", host: letter.host, correlationID: letter.properties.correlationID)
        event.attach(
            DeadLetterContent(body: message.body, headers: message.properties.headers ?? [:]), bodyLimit: Self.displayedBodyLimit)
        self.event = event
        self.message = message
    }

    /// An id for a message that came without one (not published by Warren): the same for the same message, so a
    /// redelivered copy is the same record.
    private static func syntheticID(of message: StoredMessage, atMs: Int64) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in message.body + Array(((try? message.encodedProperties()) ?? "").utf8) + Array("\(atMs)".utf8) {
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

    public init(messageID: String? = nil, groupID: String? = nil, queue: String? = nil, sinceMs: Int64? = nil, untilMs: Int64? = nil) {
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
